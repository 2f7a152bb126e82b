"""``evol score --method evol`` (the default): Deita's EVOL COMPLEXITY and EVOL QUALITY, a seed and its kept
evolutions scored side by side by one judge call per lineage and criterion; real runs, real HTTP."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from evol.cli.main import main as cli
from evol.quality.score_reader import read_scores
from evol.quality.scoring import GROUP_MAX, Item, Score, asks, load_scores
from evol.testing.server import Reply, ScriptedServer, last_user

from ..output.test_export import SEEDS, make_run, records


@pytest.mark.parametrize(
    "answer, finish, want",
    [
        ("[1] Score: 3\n[2] Score: 7\n[3] Score: 9", "stop", [3, 7, 9]),
        ("<think>[1] is easy, maybe 9</think>\n**[1]** Score: 3/10\n2. 7\nVersion 3: Rating - 8", "stop", [3, 7, 8]),
        ("Score: 2\nScore: 5\nScore: 6", "stop", [2, 5, 6]),  # no numbers, one scored line each: in order
        ("[2] Score: 6\n[1] Score: 4\n[3] Score: 5\n[1] Score: 2", "stop", [2, 6, 5]),  # the last line for one wins
        ("[1] Score: 2\n[2] Score: 11\n[3] Score:", "length", [2, "out_of_range", "truncated"]),
        ("[1] Score: 4\n[3] Score: 6", "stop", [4, "no_score", 6]),
        ("", "stop", ["empty"] * 3),
        ("I'm sorry, but I can't rate these.", "stop", ["refused"] * 3),
        ("[1] Score: 4\n[2] Score: 5\n[3] Score: 6", "content_filter", ["content_filtered"] * 3),
    ],
)
def test_read_scores(answer, finish, want):
    got = read_scores(answer, finish, len(want))
    for reading, w in zip(got, want, strict=True):
        if isinstance(w, str):
            assert reading.value is None and reading.unclear.outcome == w and reading.unclear.answer == answer[:300]
        else:
            assert reading.value == w and reading.unclear is None


def test_asks_show_each_lineage_from_its_seed_by_round_and_split_long_ones():
    long = [Item(f"a.r{n}", n, f"a{n}", "out", "a") for n in range(GROUP_MAX + 2, -1, -1)]  # given last round first
    short = [Item("b", 0, "b0", None, "b"), Item("b.r1", 1, "b1", "out", "b")]
    got = asks([*long, *short], "evol")
    complexity = [[i.id for i in a.items] for a in got if a.criterion == "complexity"]
    assert complexity == [
        [f"a.r{n}" for n in range(GROUP_MAX)],
        [f"a.r{n}" for n in range(GROUP_MAX, GROUP_MAX + 3)],
        ["b", "b.r1"],
    ]
    quality = [[i.id for i in a.items] for a in got if a.criterion == "quality"]
    assert quality[-1] == ["b.r1"]  # the seed without an answer has no quality to compare
    assert len({a.sample for a in got}) == len(got)
    # direct: one call per row and criterion, as before
    assert len(asks([*long, *short], "direct")) == len(long) * 2 + 3


def depth(instruction: str) -> int:
    """The scripted run's evolutions each add one "Moreover" clause: the planted complexity of a version."""
    return instruction.count("Moreover")


FORMS = [
    lambda scores: "\n".join(f"[{n}] Score: {s}" for n, s in enumerate(scores, 1)),
    lambda scores: "<think>Ranking them first.</think>\n" + "\n".join(f"{n}. {s}/10" for n, s in enumerate(scores, 1)),
    lambda scores: "\n".join(f"**Version {n}:** Rating - {s}" for n, s in enumerate(scores, 1)),
]


def versions(prompt: str) -> list[tuple[str, str | None]]:
    """(instruction, response or None) of each numbered version the side-by-side prompt shows."""
    shown = prompt.split("\n\nReply with one line per", 1)[0]
    pairs = re.findall(
        r"\[(\d+)\] Instruction:\n(.*?)\n\n\[\1\] Response:\n(.*?)(?=\n\n\[\d+\] Instruction:|\Z)", shown, re.S
    )
    if pairs:
        return [(i, r) for _, i, r in pairs]
    return [(i, None) for i in re.findall(r"^\[\d+\] (.*)$", shown, re.M)]


def side_by_side(request: dict) -> Reply:
    """A judge that ranks the versions it is shown: complexity by depth, quality the other way round."""
    prompt = last_user(request)
    shown = versions(prompt)
    assert shown, prompt
    quality = shown[0][1] is not None
    scores = [(9 - depth(i)) if quality else min(10, 2 + 2 * depth(i)) for i, _ in shown]
    form = FORMS[int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:2], "big") % len(FORMS)]
    return Reply(content=form(scores))


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("runs") / "r", SEEDS, "--engine", "local")


@pytest.mark.slow
def test_each_lineage_is_scored_side_by_side_in_one_call_per_criterion(run, tmp_path):
    target = tmp_path / "r"
    shutil.copytree(run, target)
    with ScriptedServer(side_by_side) as srv:
        assert cli(["-q", "score", str(target), "--base-url", srv.base_url]) == 0
        prompts = [last_user(b) for b in srv.requests]
        assert cli(["-q", "score", str(target), "--base-url", srv.base_url]) == 0
        assert srv.chat_count() == len(prompts)  # scoring again pays nothing
    recs = records(target)
    lineages: dict[str, list[dict]] = {}
    for r in recs:
        lineages.setdefault(r["seed_id"], []).append(r)
    # one call per lineage and criterion (complexity for every seed, the one whose answer was eliminated too);
    # each shows the seed first, then its evolutions round by round
    quality = [p for p in prompts if "] Response:\n" in p]
    assert len(prompts) - len(quality) == len(SEEDS) and len(quality) == len(lineages) == len(SEEDS) - 1
    by_round = {tuple(r["instruction"] for r in sorted(rows, key=lambda r: r["round"])) for rows in lineages.values()}
    for prompt in quality:
        assert tuple(i for i, _ in versions(prompt)) in by_round
    scores = load_scores(target)
    assert {r["id"] for r in recs} <= set(scores)
    for rows in lineages.values():
        ids = tuple(r["id"] for r in sorted(rows, key=lambda r: r["round"]))
        for r in rows:
            s = scores[r["id"]]
            assert s.method == "evol" and s.compared == ids and not s.unclear
            assert s.complexity == min(10, 2 + 2 * depth(r["instruction"])) and s.quality == 9 - depth(r["instruction"])
    # within a lineage the judge's ranking is kept: a later round scores higher in complexity than its parent
    longest = max(lineages.values(), key=len)
    assert len(longest) == 4 and len({scores[r["id"]].complexity for r in longest}) == 4
    for line in (target / "scores.jsonl").read_text().splitlines():
        assert set(json.loads(line)) == set(Score.model_fields)


@pytest.mark.slow
def test_a_lineage_the_judge_scored_in_part_records_the_rest_as_unclear(run, tmp_path):
    target = tmp_path / "r"
    shutil.copytree(run, target)

    def first_only(request: dict) -> Reply:
        return Reply(content="[1] Score: 5\nThe others are about the same.")

    with ScriptedServer(first_only) as srv:
        assert cli(["-q", "score", str(target), "--base-url", srv.base_url]) == 0
    scores = load_scores(target)
    for r in records(target):
        s = scores[r["id"]]
        if s.compared.index(r["id"]) == 0:
            assert s.complexity == 5 and "complexity" not in s.unclear
        else:  # never a default: the version the judge gave no score is unclear, with its answer
            assert s.complexity is None and s.unclear["complexity"].outcome == "no_score"
            assert s.unclear["complexity"].answer.startswith("[1] Score: 5")
