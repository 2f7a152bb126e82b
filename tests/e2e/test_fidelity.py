"""Runs against the scripted HTTP server that check the method's fidelity: what the equality judge says is read,
retried and recorded, and in-depth evolutions of long instructions are not thrown out as their own duplicates."""

from __future__ import annotations

import json
import re
import threading
from collections import Counter

import pytest
from rapidfuzz import fuzz

from evol.seeds import load_seeds
from evol.testing.replies import GIVEN, given_prompt
from evol.testing.server import Reply, ScriptedServer, last_user
from evol.text import normalize

from ..conftest import SEEDS, run_cli
from ..realistic import long_seeds

pytestmark = pytest.mark.slow  # scripted runs of 42 seeds over 3 rounds (6-12 s each)

THINK_CUT = "<think>\nLet me compare the two instructions carefully. The first asks for"


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def case_of(prompt: str) -> int:
    """The seed number a prompt is about: every seed of these tests says "(case N)"."""
    found = re.search(r"\(case (\d+)\)", prompt, re.IGNORECASE)
    assert found is not None, prompt
    return int(found.group(1))


# --- the judge ---------------------------------------------------------------------------------------

#: per case (seed i): the judge's first answer, and its answer to the retry (None: no retry expected)
JUDGE = [
    (Reply(content="Not Equal"), None),
    (Reply(content="**Equal**"), None),
    (Reply(content="Equal. Only the wording is different."), None),
    (Reply(content="Not equal: the second adds a constraint."), None),
    (Reply(content="<think>\nThe second adds a word limit.\n</think>\n\nNot Equal"), None),
    (
        Reply(content=THINK_CUT, finish_reason="length"),
        Reply(content="<think>\nIt adds a limit.\n</think>\n\nNot Equal"),
    ),
    (Reply(content="I cannot say."), Reply(content="Hard to tell.")),
    (Reply(content=""), Reply(content="Equal")),
    (Reply(content="Same"), None),
    (Reply(content="They are different."), None),
    (Reply(content="The second adds a deadline, so they are not equal."), None),
    (Reply(content=THINK_CUT, finish_reason="length"), Reply(content=THINK_CUT + " a poem", finish_reason="length")),
]
#: the rule each case ends under by default (None: kept)
EXPECTED = [
    None,
    "no_information_gain",
    "no_information_gain",
    None,
    None,
    None,
    "judge_unclear",
    "no_information_gain",
    "no_information_gain",
    None,
    None,
    "judge_unclear",
]


class JudgeScript:
    """Evolutions that add a sentence; the judge answers each case's scripted forms, a retry its second one."""

    def __init__(self):
        self.judge_calls: Counter = Counter()
        self.max_tokens: dict[int, list[int]] = {}
        self.lock = threading.Lock()

    def __call__(self, request: dict) -> Reply:
        prompt = last_user(request)
        case = case_of(prompt)
        if GIVEN in prompt:
            return Reply(
                content=f"{given_prompt(prompt)} Answer in exactly {case + 3} numbered steps, citing one source each."
            )
        if "Second instruction:" in prompt:
            with self.lock:
                self.judge_calls[case] += 1
                n = self.judge_calls[case]
                self.max_tokens.setdefault(case, []).append(request["max_tokens"])
            first, retry = JUDGE[case]
            return first if n == 1 else (retry or Reply(content="unexpected retry"))
        return Reply(content=f"Here are the steps, each with its source, for case {case}: one, two, three and more.")


def judge_run(tmp_path, *extra):
    tmp_path.mkdir(exist_ok=True)
    seeds = tmp_path / "seeds.txt"
    shipped = [s.instruction.replace("\n", " ") for s in load_seeds(SEEDS).seeds]
    seeds.write_text("".join(f"{shipped[i]} (case {i})\n" for i in range(len(JUDGE))))
    script = JudgeScript()
    out = tmp_path / "out"
    with ScriptedServer(script) as srv:
        proc = run_cli(
            "run",
            "--seeds",
            str(seeds),
            "--rounds",
            "1",
            "--out",
            str(out),
            "--base-url",
            srv.base_url,
            "--concurrency",
            "4",
            # the judge's cases are the evolutions: the seeds' own answers (in the dataset by default) are left out
            "--no-seeds",
            *extra,
        )
        script.batches = srv.calls["batches.create"]
    assert proc.returncode == 0, proc.stderr
    return out, script


def test_the_judge_is_read_retried_once_when_unclear_recorded_and_counted(tmp_path):
    out, script = judge_run(tmp_path)
    records, rejected = read_jsonl(out / "records.jsonl"), read_jsonl(out / "rejected.jsonl")
    manifest = json.loads((out / "manifest.json").read_text())
    case = {r["seed_index"]: r for r in records + rejected}
    assert {i: (None if i in {r["seed_index"] for r in records} else case[i]["rule"]) for i in case} == dict(
        enumerate(EXPECTED)
    )
    # every verdict is in the lineage: each answer's raw text, finish_reason and reading, the retry's too
    for i, (first, retry) in enumerate(JUDGE):
        judge = case[i]["judge"]
        answers = [(a["text"], a["finish_reason"]) for a in judge["answers"]]
        assert answers == [(r.content, r.finish_reason) for r in (first, retry) if r is not None], i
        assert judge["judgement"] == judge["answers"][-1]["judgement"]
        assert script.judge_calls[i] == len(answers)
    assert [a["judgement"] for a in case[5]["judge"]["answers"]] == ["unclear", "not_equal"]
    assert [a["judgement"] for a in case[7]["judge"]["answers"]] == ["unclear", "equal"]
    assert case[6]["stage"] == "judge" and case[6]["kind"] == "eliminated"
    # the judge has room for a reasoning block, and a retry of an answer cut off mid-thought twice that
    assert script.max_tokens[0] == [512] and script.max_tokens[6] == [512, 512] and script.max_tokens[5] == [512, 1024]
    # counted: unclear first answers (cases 5, 6, 7, 11), two resolved by the retry, two eliminated
    assert manifest["counts"]["judge_unclear"] == 4
    assert manifest["judge"] == {"judged": 12, "unclear": 4, "resolved_by_retry": 2, "unclear_after_retry": 2}
    assert manifest["by_rule"]["judge_unclear"] == 2 and manifest["by_rule"]["no_information_gain"] == 4
    assert manifest["usage"]["calls"]["judge"] == 16


def test_unclear_verdicts_can_be_kept_and_still_carry_their_answers(tmp_path):
    out, _ = judge_run(tmp_path, "--keep-judge-unclear")
    records = {r["seed_index"]: r for r in read_jsonl(out / "records.jsonl")}
    for i in (6, 11):
        assert records[i]["judge"]["judgement"] == "unclear" and len(records[i]["judge"]["answers"]) == 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert "judge_unclear" not in manifest["by_rule"] and manifest["counts"]["judge_unclear"] == 4
    assert manifest["config"]["keep_judge_unclear"] is True


def test_through_the_batch_api_the_retry_goes_out_in_a_later_batch_with_the_same_outcome(tmp_path):
    direct, _ = judge_run(tmp_path / "direct")
    config = tmp_path / "batch.json"
    config.write_text(json.dumps({"batch_poll_seconds": 0.2}))
    batch, script = judge_run(tmp_path / "batch", "--batch", "--config", str(config))
    for name in ("dataset.json", "records.jsonl", "rejected.jsonl"):
        assert (batch / name).read_bytes() == (direct / name).read_bytes(), name
    m = json.loads((batch / "manifest.json").read_text())
    assert m["judge"] == {"judged": 12, "unclear": 4, "resolved_by_retry": 2, "unclear_after_retry": 2}
    assert sum(script.judge_calls.values()) == 16
    assert script.batches >= 4  # evolve, judge, respond, and the retries' (beside some answers or after them)


# --- dedup and lineages ------------------------------------------------------------------------------

WORDS = [
    "amber",
    "basin",
    "cedar",
    "delta",
    "ember",
    "fjord",
    "grove",
    "heron",
    "inlet",
    "juniper",
    "kestrel",
    "larch",
    "marsh",
    "nettle",
    "otter",
    "pebble",
    "quarry",
    "reed",
    "sorrel",
    "thicket",
]


def deeper(parent: str, i: int, round_no: int) -> str:
    """The in-depth step the method asks for: the parent and 10-20 new words."""
    a, b, c = (WORDS[(i + round_no * k) % len(WORDS)] for k in (3, 5, 11))
    return f"{parent} Also compare the {a} and {b} counts with round {round_no} of last year's {c} census data."


#: seed index -> {round: the copy planted there}
PLANTED = {
    4: {1: "near copy of seed 0's first evolution"},
    5: {2: "its own seed again"},
    6: {1: "seed 2 again"},
}


class LineageScript:
    """Genuine in-depth evolutions every round, except for planted copies (seed index -> {round: what})."""

    def __init__(self, seeds: list[str]):
        self.seeds = seeds
        self.rounds: Counter = Counter()
        self.lock = threading.Lock()

    def __call__(self, request: dict) -> Reply:
        prompt = last_user(request)
        i = case_of(prompt)
        if GIVEN in prompt:
            with self.lock:
                self.rounds[i] += 1
                n = self.rounds[i]
            plant = PLANTED.get(i, {}).get(n)
            if plant == "near copy of seed 0's first evolution":
                return Reply(content=deeper(self.seeds[0], 0, 1).replace("(case 0)", "(case 4)") + " Thanks.")
            if plant == "its own seed again":
                return Reply(content=self.seeds[i].upper())
            if plant == "seed 2 again":
                return Reply(content=_exact_copy(self.seeds[2]))
            return Reply(content=deeper(given_prompt(prompt), i, n))
        if "Second instruction:" in prompt:
            return Reply(content="Not Equal")
        return Reply(content=f"A survey plan for case {i}: day one, the reed beds; day two, the open water; and so on.")


def _exact_copy(text: str) -> str:
    """The same words in other case and punctuation: an exact duplicate once normalised."""
    return text.upper().replace(".", "!")


def test_in_depth_evolutions_of_long_instructions_are_kept_round_after_round(tmp_path):
    seeds = long_seeds([460] * 8)
    assert all(len(s) >= 450 for s in seeds)
    seed_file = tmp_path / "seeds.txt"
    seed_file.write_text("\n".join(seeds) + "\n")
    out = tmp_path / "out"
    with ScriptedServer(LineageScript(seeds)) as srv:
        proc = run_cli(
            "run",
            "--seeds",
            str(seed_file),
            "--rounds",
            "3",
            "--out",
            str(out),
            "--base-url",
            srv.base_url,
            "--concurrency",
            "4",
            "--no-seeds",  # what is measured is the evolutions of long parents, not the seeds' own rows
        )
    assert proc.returncode == 0, proc.stderr
    records, rejected = read_jsonl(out / "records.jsonl"), read_jsonl(out / "rejected.jsonl")
    text = {r["seed_id"]: seeds[r["seed_index"]] for r in records + rejected}
    text.update({r["id"]: r["instruction"] for r in records})
    kept = {r["id"] for r in records}
    by_id = {r["id"]: r for r in rejected}
    ids = {r["seed_index"]: r["seed_id"] for r in records + rejected}
    # every genuine in-depth evolution is kept, each round, though it stays within ratio 0.9 of its parent
    genuine = {f"{ids[i]}.r{n}" for i in range(8) for n in (1, 2, 3) if n not in PLANTED.get(i, {})}
    assert genuine <= kept, sorted(genuine - kept)
    close = [r for r in records if fuzz.ratio(normalize(r["instruction"]), normalize(text[r["parent_id"]])) >= 90]
    assert len(close) >= 15  # the case that used to be lost as near_duplicate of the parent
    # a near copy of another lineage's evolution is still a near_duplicate, and exact repeats exact_duplicates,
    # of another lineage's seed or of the item's own ancestor
    near, own, other = by_id[f"{ids[4]}.r1"], by_id[f"{ids[5]}.r2"], by_id[f"{ids[6]}.r1"]
    assert (near["rule"], near["duplicate_of"]) == ("near_duplicate", f"{ids[0]}.r1")
    assert (own["rule"], own["duplicate_of"]) == ("exact_duplicate", ids[5])
    assert (other["rule"], other["duplicate_of"]) == ("exact_duplicate", ids[2])
    assert {r["rule"] for r in rejected} == {"near_duplicate", "exact_duplicate"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["kept"] == 21 and manifest["counts"]["duplicate"] == 3 and manifest["counts"]["balanced"]
