"""An evolution that already repeats a kept text is not answered: settling would reject it whatever its answer."""

import json

from evol.seeds import load_seeds
from evol.testing.replies import GIVEN, given_prompt
from evol.testing.server import Reply, ScriptedServer, last_user
from evol.testing.words import filler

from ..conftest import run_cli

SEEDS = [f"Describe the history of topic {word} for a curious reader." for word in ("alpha", "beta", "gamma", "delta")]


def script(request: dict) -> Reply:
    prompt = last_user(request)
    if GIVEN in prompt:
        parent = given_prompt(prompt)
        if parent == SEEDS[2]:
            return Reply(content=SEEDS[0].upper())  # seed 0 again (case aside): an exact duplicate of a seed
        return Reply(content=f"{parent} {filler(parent, 12)}")
    if "First instruction:" in prompt:
        return Reply(content="Not Equal")
    return Reply(content=f"A full answer: {filler(prompt, 40)}")


def test_an_evolution_repeating_a_seed_is_rejected_without_being_answered(tmp_path):
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("\n".join(SEEDS) + "\n")
    out = tmp_path / "run"
    with ScriptedServer(script) as srv:
        # the seeds left out of the dataset: every answer asked for is an evolution's
        args = (f"--seeds={seeds}", "--rounds=1", "--no-seeds", f"--base-url={srv.base_url}", f"--out={out}")
        r = run_cli("run", *args)
        assert r.returncode == 0, r.stderr
        answered = [
            last_user(b) for b in srv.requests if GIVEN not in last_user(b) and "First instruction:" not in last_user(b)
        ]
    assert len(answered) == 3 and not any(SEEDS[0].upper() in p for p in answered)
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    dup = next(x for x in rejected if x["kind"] == "duplicate")
    seed0 = load_seeds(seeds).seeds[0].id
    assert (dup["rule"], dup["stage"], dup["duplicate_of"]) == ("exact_duplicate", "dedup", seed0)
    assert dup.get("output") is None  # no answer was asked for
    assert set(dup["usage"]) == {"evolve", "judge"}  # paid for up to the judge, not the answer
    m = json.loads((out / "manifest.json").read_text())
    assert m["usage"]["calls"]["respond"] == 3 and m["usage"]["calls_saved"] == {"respond": 1}
    assert m["counts"]["duplicate"] == 1 and m["counts"]["kept"] == 3
