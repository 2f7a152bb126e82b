"""``evol export --select``: the best K rows by score, none too similar to another, within quotas; real files, real HTTP."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import pytest
from rapidfuzz import fuzz

from evol.cli.main import main as cli
from evol.errors import ConfigError
from evol.models import Record
from evol.output.export import ExportOptions, export
from evol.output.selection import COSINE_DEFAULT, RATIO_DEFAULT, Choice, Quota, parse_quota
from evol.quality.score_reader import Unclear
from evol.quality.scoring import Score, load_scores
from evol.rundir.files import write_json, write_jsonl
from evol.rundir.folder import SCORES
from evol.testing.server import ScriptedServer
from evol.text import normalize

from .test_export import VOCAB

SUBJECTS = (
    "the water cycle",
    "compound interest",
    "a bicycle gear",
    "plate tectonics",
    "a sourdough starter",
    "binary search",
    "the immune system",
    "a solar eclipse",
    "supply and demand",
    "a jazz chord",
    "photosynthesis",
    "a hash table",
    "the Roman senate",
    "ocean tides",
    "a heat pump",
)
TASKS = (
    "Explain how {s} works to a curious teenager, with one everyday example.",
    "Write a short quiz of four questions about {s}, with the answers at the end.",
    "Compare {s} with something most people already know, in three bullet points.",
    "Describe a common misconception about {s} and correct it in plain words.",
)
OPERATIONS = ("deepen", "concretize", "add_constraints", "breadth")


def h(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def details(key: str) -> str:
    words = [VOCAB[h(f"{key}:{i}") % len(VOCAB)] for i in range(10)]
    return (
        f"Mention the {words[0]} {words[1]} and the {words[2]} {words[3]}, keep the tone {words[4]}, "
        f"and end with a question about {words[5]}, {words[6]} or {words[7]} {words[8]} {words[9]}."
    )


def make_run(path: Path, rows: list[Record], scores: list[Score] | None, run_id: str = "run-a") -> Path:
    """A run folder as 'evol run' and 'evol score' leave it: manifest, records.jsonl and scores.jsonl."""
    path.mkdir(parents=True)
    write_json(
        path / "manifest.json",
        {
            "run_id": run_id,
            "status": "complete",
            "profile": {"name": "general"},
            "counts": {"seeds": len(rows), "kept": len(rows)},
        },
    )
    write_jsonl(path / "records.jsonl", rows)
    if scores is not None:
        write_jsonl(path / SCORES, scores)
    return path


def rows_and_scores(n_twins: int = 10) -> tuple[list[Record], list[Score]]:
    """60 distinct instructions with hashed scores (many ties), and near twins of the first ``n_twins`` that score higher."""
    # an evolved instruction: a task and the details later rounds added, which differ from row to row
    texts = [f"{t.format(s=s)} {details(s + t)}" for s in SUBJECTS for t in TASKS]
    rows: list[Record] = []
    scores: list[Score] = []
    for i, text in enumerate(texts):
        rnd, op = 1 + i % 3, OPERATIONS[i % 4]
        rows.append(
            Record(
                id=f"s{i}.r{rnd}",
                seed_id=f"s{i}",
                seed_index=i,
                round=rnd,
                operation=op,
                instruction=text,
                output=f"An answer about {text[:30]}",
            )
        )
        scores.append(Score(id=f"s{i}.r{rnd}", round=rnd, complexity=1 + h(text) % 5, quality=1 + h(text[::-1]) % 3))
    for i in range(n_twins):  # one word changed: a near duplicate of row i at rapidfuzz ratio >= 0.9, scored 10 x 10
        twin = rows[i].instruction.rstrip(".") + ", please."
        update = {"id": f"t{i}.r1", "seed_id": f"t{i}", "seed_index": len(texts) + i, "round": 1, "instruction": twin}
        rows.append(Record.model_validate(rows[i].model_dump() | update))
        scores.append(Score(id=f"t{i}.r1", round=1, complexity=10, quality=10))
    return rows, scores


def product(s: Score) -> float:
    """complexity x quality: every row of rows_and_scores has both."""
    assert s.complexity is not None and s.quality is not None
    return s.complexity * s.quality


def greedy(rows: list[Record], scores: list[Score], k: int, threshold: float = 90) -> list[str]:
    """The reference: rank by complexity x quality (stable), take a row unless rapidfuzz ratio >= threshold with one taken."""
    taken: list[Record] = []
    # ties: the more complex first, then the later round, then file order (a stable sort)
    ranked = sorted(
        zip(rows, scores, strict=True), key=lambda rs: (-product(rs[1]), -(rs[1].complexity or 0), -rs[0].round)
    )
    for row, _ in ranked:
        if all(fuzz.ratio(normalize(row.instruction), normalize(t.instruction)) < threshold for t in taken):
            taken.append(row)
        if len(taken) == k:
            break
    return [t.id for t in taken]


@pytest.fixture
def run(tmp_path) -> Path:
    rows, scores = rows_and_scores()
    return make_run(tmp_path / "run", rows, scores)


def chosen(out: Path) -> list[dict]:
    return json.loads((out / "export.json").read_text())["selected"]


def test_select_takes_exactly_k_in_score_order_none_too_similar(run, tmp_path):
    summary = export([run], tmp_path / "out", ExportOptions(fmt="jsonl", choice=Choice(k=25)))
    picked = summary["selected"]
    assert len(picked) == 25 == summary["rows"]["train"]
    values = [s["complexity"] * s["quality"] for s in picked]
    assert values == sorted(values, reverse=True)
    # a tie goes to the more complex row, then to the later round, and only then to file order: integer scores
    # tie often, and file order is round order, which would hand every tie to the least-evolved row
    lines = [json.loads(x) for x in (run / "records.jsonl").read_text().splitlines()]
    order, rounds = {r["id"]: i for i, r in enumerate(lines)}, {r["id"]: r["round"] for r in lines}
    ties = broken_by = 0
    for a, b in itertools.pairwise(picked):
        if a["complexity"] * a["quality"] != b["complexity"] * b["quality"]:
            continue
        ties += 1
        if a["complexity"] != b["complexity"]:
            assert a["complexity"] > b["complexity"]
            broken_by += 1
        elif rounds[a["id"]] != rounds[b["id"]]:
            assert rounds[a["id"]] > rounds[b["id"]]
            broken_by += 1
        else:
            assert order[a["id"]] < order[b["id"]]
    assert ties and broken_by  # the hashed scores hold ties that complexity or round decided
    texts = [json.loads(x)["instruction"] for x in (tmp_path / "out" / "train.jsonl").read_text().splitlines()]
    for i, a in enumerate(texts):
        for b in texts[i + 1 :]:
            assert fuzz.ratio(normalize(a), normalize(b)) < 90
    # the same rows as an exhaustive greedy walk: best first, each compared with every row taken before it
    assert [p["id"] for p in picked] == greedy(*rows_and_scores(), k=25)
    assert summary["left_out"]["not among the best --select rows"] == 45
    # asked for all the distinct rows: each twin scored 10 x 10 is taken first, and shadows its original
    every = export([run], tmp_path / "all", ExportOptions(fmt="jsonl", choice=Choice(k=60)))
    ids = {p["id"] for p in every["selected"]}
    assert len(ids) == 60 and every["chosen"]["skipped_as_similar"] == 10
    assert {f"t{i}.r1" for i in range(10)} <= ids and not {f"s{i}.r{1 + i % 3}" for i in range(10)} & ids
    div = every["chosen"][
        "diversity"
    ]  # the 60 best by score alone hold twin pairs: their nearest neighbours are closer
    assert div["selected"]["mean_nearest_similarity"] < div["best_by_score_alone"]["mean_nearest_similarity"]


def test_the_same_command_gives_the_same_rows(run, tmp_path):
    args = ["-q", "export", str(run), "--format", "jsonl", "--select", "20", "--by", "quality"]
    assert cli([*args, "--out", str(tmp_path / "a")]) == 0
    assert cli([*args, "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "a" / "train.jsonl").read_bytes() == (tmp_path / "b" / "train.jsonl").read_bytes()
    assert chosen(tmp_path / "a") == chosen(tmp_path / "b")
    qualities = [s["quality"] for s in chosen(tmp_path / "a")]
    assert len(qualities) == 20 and qualities == sorted(qualities, reverse=True)


def test_similarity_by_embeddings_from_an_endpoint(tmp_path):
    # the same words in another order: far apart by rapidfuzz ratio, one point by bag-of-words embeddings
    texts = [
        "cats chase mice in the old barn at night",
        "at night in the old barn mice chase cats",
        "dogs bark at the mail carrier every morning",
        "at the mail carrier every morning dogs bark",
        "a kettle whistles when the water boils",
    ]
    rows = [
        Record(id=f"r{i}", seed_id=f"s{i}", seed_index=i, round=1, operation="breadth", instruction=t, output="ok")
        for i, t in enumerate(texts)
    ]
    scores = [Score(id=f"r{i}", round=1, complexity=9 - i, quality=5) for i in range(len(texts))]
    run = make_run(tmp_path / "run", rows, scores)
    lexical = export([run], tmp_path / "lex", ExportOptions(fmt="jsonl", choice=Choice(k=5)))
    assert [s["id"] for s in lexical["selected"]] == ["r0", "r1", "r2", "r3", "r4"]
    with ScriptedServer() as srv:
        choice = Choice(k=5, max_similarity=0.99, embeddings_url=srv.base_url, embeddings_model="bag-of-words")
        semantic = export([run], tmp_path / "sem", ExportOptions(fmt="jsonl", choice=choice))
        requests = srv.embedding_requests
    assert [s["id"] for s in semantic["selected"]] == ["r0", "r2", "r4"]  # r1 and r3 reorder r0 and r2's words
    assert (
        semantic["chosen"]["skipped_as_similar"] == 2 and "cosine of bag-of-words" in semantic["choice"]["similarity"]
    )
    assert requests and {r["model"] for r in requests} == {"bag-of-words"}
    card = (tmp_path / "sem" / "README.md").read_text()
    assert "## How the rows were chosen" in card and "cosine of bag-of-words embeddings" in card


def test_the_similarity_default_follows_the_similarity_and_an_explicit_one_wins(run, tmp_path):
    # ratio and cosine have different scales: each its own default, recorded with where it came from
    with ScriptedServer() as srv:
        base = ["-q", "export", str(run), "--select", "10", "--embeddings-url", srv.base_url]
        assert cli([*base, "--out", str(tmp_path / "emb")]) == 0
        assert cli([*base, "--out", str(tmp_path / "own"), "--max-similarity", "0.97"]) == 0
    assert cli(["-q", "export", str(run), "--select", "10", "--out", str(tmp_path / "lex")]) == 0
    got = {n: json.loads((tmp_path / n / "export.json").read_text())["choice"] for n in ("emb", "own", "lex")}
    assert (got["emb"]["max_similarity"], got["emb"]["max_similarity_from"]) == (
        COSINE_DEFAULT,
        "the default for embeddings",
    )
    assert (got["own"]["max_similarity"], got["own"]["max_similarity_from"]) == (0.97, "--max-similarity")
    assert (got["lex"]["max_similarity"], got["lex"]["max_similarity_from"]) == (
        RATIO_DEFAULT,
        "the default for rapidfuzz ratio",
    )
    assert COSINE_DEFAULT != RATIO_DEFAULT


def test_filters_balance_and_quotas(run, tmp_path):
    by_id = load_scores(run)
    s = export([run], tmp_path / "min", ExportOptions(fmt="jsonl", choice=Choice(min_complexity=4, min_quality=2)))
    kept = [json.loads(x)["id"] for x in (tmp_path / "min" / "train.jsonl").read_text().splitlines()]
    assert kept and all(by_id[i].complexity >= 4 and by_id[i].quality >= 2 for i in kept)
    assert s["left_out"]["complexity below --min-complexity"] + s["left_out"].get(
        "quality below --min-quality", 0
    ) == len(by_id) - len(kept)

    balanced = export([run], tmp_path / "bal", ExportOptions(fmt="jsonl", choice=Choice(k=20, balance="operation")))
    assert balanced["chosen"]["groups"]["operation"] == dict.fromkeys(sorted(OPERATIONS), 5)
    assert len(balanced["selected"]) == 20

    quota = Choice(k=20, quotas=(parse_quota("operation:deepen=2"), parse_quota("round:1=0.25")))
    capped = export([run], tmp_path / "quota", ExportOptions(fmt="jsonl", choice=quota))
    groups = capped["chosen"]["groups"]
    assert groups["operation"]["deepen"] == 2 and groups["round"]["1"] == 5 and len(capped["selected"]) == 20
    # quotas that leave too few rows: fewer than K, and export.json says why
    tight = Choice(k=20, quotas=tuple(Quota("round", str(r), 3) for r in (1, 2, 3)))
    few = export([run], tmp_path / "few", ExportOptions(fmt="jsonl", choice=tight))
    assert len(few["selected"]) == 9 and few["chosen"]["stopped"] == "the quotas leave no room for more"


def test_unclear_scores_are_left_out_with_their_reason(tmp_path):
    rows, scores = rows_and_scores(0)
    scores[3] = scores[3].model_copy(update={"quality": None, "unclear": {"quality": Unclear(outcome="truncated")}})
    run = make_run(tmp_path / "run", rows, scores)
    summary = export([run], tmp_path / "out", ExportOptions(fmt="jsonl", choice=Choice(k=60, max_similarity=1.0)))
    assert len(summary["selected"]) == 59 and summary["left_out"]["quality unclear (truncated)"] == 1


def test_export_json_and_card_record_the_choice(run, tmp_path):
    summary = export([run], tmp_path / "out", ExportOptions(fmt="alpaca", choice=Choice(k=12, min_quality=2)))
    saved = json.loads((tmp_path / "out" / "export.json").read_text())
    assert saved["choice"] == {
        "select": 12,
        "by": "complexity*quality",
        "max_similarity": 0.9,
        "max_similarity_from": "the default for rapidfuzz ratio",
        "similarity": "rapidfuzz ratio",
        "min_quality": 2,
    }
    assert saved["selected"] == summary["selected"] and all(
        set(s) == {"run_id", "id", "complexity", "quality"} for s in saved["selected"]
    )
    chosen_scores = saved["chosen"]["scores"]
    assert chosen_scores["selected"]["complexity"]["mean"] > chosen_scores["eligible"]["complexity"]["mean"]
    div = saved["chosen"]["diversity"]
    assert 0 < div["selected"]["mean_nearest_similarity"] <= div["best_by_score_alone"]["mean_nearest_similarity"]
    card = (tmp_path / "out" / "README.md").read_text()
    assert "The best 12 of" in card and "`complexity*quality`" in card and "quality at least 2" in card


def test_without_scores_select_is_one_sentence(tmp_path, capsys):
    rows, _ = rows_and_scores(0)
    bare = make_run(tmp_path / "bare", rows, None)
    assert cli(["export", str(bare), "--out", str(tmp_path / "o"), "--select", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "60 of 60 rows have no complexity score" in err[0] and f"evol score {bare}" in err[0]
    assert "Traceback" not in err[0]
    # an old difficulty-only scores.jsonl ranks by complexity, but has no quality to rank by
    old = make_run(tmp_path / "old", rows, None, run_id="old")
    write_jsonl(
        old / SCORES,
        [
            {"id": r.id, "round": r.round, "score": 1 + i % 9, "model": "m", "prompt_sha256": "x"}
            for i, r in enumerate(rows)
        ],
    )
    assert cli(["-q", "export", str(old), "--out", str(tmp_path / "c"), "--select", "5", "--by", "complexity"]) == 0
    with pytest.raises(ConfigError, match="no quality score"):
        export([old], tmp_path / "q", ExportOptions(choice=Choice(k=5)))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--select", "0"], "--select takes a number of rows of at least 1"),
        (["--select", "5", "--max-similarity", "1.5"], "--max-similarity is a similarity above 0 and at most 1"),
        (["--balance", "round"], "--balance shares out the rows of --select K"),
        (["--select", "5", "--quota", "operation:nope=3"], "no exported row has operation nope"),
        (["--select", "5", "--quota", "colour:red=3"], "--quota takes round:N=LIMIT"),
        (["--select", "5", "--quota", "deepen"], "--quota takes FIELD:VALUE=N"),
        (["--min-quality", "11"], "--min-quality is a score from 1 to 10"),
    ],
)
def test_bad_options_are_one_sentence_errors(run, tmp_path, capsys, args, message):
    assert cli(["export", str(run), "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_rows_carry_their_scores_with_their_lineage(run, tmp_path):
    import pandas as pd

    by_id = load_scores(run)
    export([run], tmp_path / "all", ExportOptions(fmt="jsonl"))  # no selection: every row, scores alongside
    rows = [json.loads(x) for x in (tmp_path / "all" / "train.jsonl").read_text().splitlines()]
    assert len(rows) == len(by_id)
    assert all((r["complexity"], r["quality"]) == (by_id[r["id"]].complexity, by_id[r["id"]].quality) for r in rows)
    export([run], tmp_path / "pq", ExportOptions(fmt="parquet", choice=Choice(k=10)))
    frame = pd.read_parquet(tmp_path / "pq" / "train.parquet")
    assert list(frame.columns[-2:]) == ["complexity", "quality"] and len(frame) == 10
    assert (frame["complexity"] * frame["quality"]).is_monotonic_decreasing


def test_balance_with_embeddings_fills_up_without_embedding_a_row_twice(tmp_path):
    # operation "short" has four rows, two of them the same words reordered: it can give three, not its share of four
    short = [
        "wind turns the old mill by the river",
        "by the river the old mill turns wind",
        "salt preserves fish for the long winter",
        "a candle measures the hours of the night",
    ]
    rows = [
        Record(id=f"a{i}", seed_id=f"a{i}", seed_index=i, round=1, operation="short", instruction=t, output="ok")
        for i, t in enumerate(short)
    ]
    rows += [
        Record(
            id=f"b{i}",
            seed_id=f"b{i}",
            seed_index=len(short) + i,
            round=1,
            operation="long",
            output="ok",
            instruction=f"{details(f'b{i}')} Number {i}.",
        )
        for i in range(20)
    ]
    scores = [Score(id=r.id, round=1, complexity=5, quality=5) for r in rows]
    run = make_run(tmp_path / "run", rows, scores)
    with ScriptedServer() as srv:
        choice = Choice(
            k=10, balance="operation", max_similarity=0.99, embeddings_url=srv.base_url, embeddings_model="bag-of-words"
        )
        summary = export([run], tmp_path / "out", ExportOptions(fmt="jsonl", choice=choice))
        embedded = [t for body in srv.embedding_requests for t in body["input"]]
    assert len(summary["selected"]) == 10 and summary["chosen"]["skipped_as_similar"] == 1
    assert summary["chosen"]["groups"]["operation"] == {"long": 7, "short": 3}
    assert sorted(embedded) == sorted(r.instruction for r in rows)  # every row once, none again in the second pass
