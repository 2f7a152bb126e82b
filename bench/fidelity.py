"""How many genuine in-depth evolutions a run keeps: the method's fidelity, measured over the shipped seeds.

    python -m bench.fidelity                  # 3 rounds over the 175 Self-Instruct seeds
    python -m bench.fidelity --rounds 4 --seed 1

A scripted model (``ScriptedServer`` in this process, real HTTP) plays a well-behaved LLM: for every in-depth
operation it returns its parent with 10-20 new words added (appended, or inserted after the first sentence),
as the templates ask; for ``mutation`` a fresh instruction on another subject; the judge says "Not Equal" to
every evolution and the answers are plain prose. Every in-depth candidate is therefore a correct evolution,
and each one the run does not keep is a loss. Printed: the kept share of in-depth evolutions, overall, by
round and by the length of the parent (under 450 characters, 450 and more), and the rules that removed the
rest. It measures and asserts nothing, and uses only what every version of evol has (``execute``, the run's
files), so the same file measures an older checkout too.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

from evol.config import RunConfig
from evol.engines.local import execute
from evol.seeds import load_seeds
from evol.testing.replies import GIVEN, given_prompt
from evol.testing.server import Reply, ScriptedServer, last_user

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "datasets" / "seeds" / "self_instruct_seed_tasks.jsonl"
LONG = 450  # characters: from here on ratio(parent, parent + 15 words) reaches 0.9

ADDITIONS = [
    "Also explain each step in plain words for a reader who is new to the subject.",
    "Keep the answer under 200 words and end it with a one-sentence summary.",
    "Give two concrete examples, and say which one matters more and why.",
    "Mention one common mistake people make here and how to avoid it.",
    "Answer as a numbered list, and justify the order you put the items in.",
    "Include at least one figure or date, and say where it comes from.",
    "Compare the result with the situation ten years ago in one short paragraph.",
    "State every assumption you make before you start, in a separate list.",
]
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
    "umber",
    "vale",
    "willow",
    "yarrow",
    "zephyr",
    "alder",
    "bracken",
    "copper",
    "dune",
    "flint",
    "gorse",
    "holly",
]
SUBJECTS = [
    "tidal energy",
    "medieval guilds",
    "coral bleaching",
    "sourdough baking",
    "railway signalling",
    "bird migration",
    "Baroque harpsichords",
    "soil erosion",
    "early radio",
    "glass blowing",
]


def pick(key: str, options: list[str]) -> str:
    return options[int(hashlib.sha256(key.encode()).hexdigest(), 16) % len(options)]


def model(request: dict) -> Reply:
    """The scripted LLM: genuine in-depth evolutions, fresh mutations, a judge that sees the gain."""
    prompt = last_user(request)
    if GIVEN in prompt:
        parent = given_prompt(prompt)
        if prompt.rstrip().endswith("#Created Prompt#:"):  # in-breadth: a new instruction, not the parent again
            h = hashlib.sha256(parent.encode()).digest()
            detail = " ".join(WORDS[b % len(WORDS)] for b in h[:10])  # so two mutations are no near copies
            return Reply(
                content=f"Describe how {SUBJECTS[h[10] % len(SUBJECTS)]} changed, in a museum guide "
                f"whose rooms are named {detail}."
            )
        added = pick(parent, ADDITIONS)
        head, dot, tail = parent.partition(". ")
        if dot and len(parent) % 2:  # inserted after the first sentence for some, appended for the others
            return Reply(content=f"{head}. {added} {tail}")
        return Reply(content=f"{parent.rstrip()} {added}")
    if "Second instruction:" in prompt:
        return Reply(content="Not Equal")
    return Reply(
        content="Here is a careful answer in several parts. First, the context and the main facts. "
        "Second, the reasoning step by step. Third, a short summary of the result."
    )


def measure(rounds: int, seed: int) -> dict:
    seeds = load_seeds(SEEDS).seeds
    text = {s.id: s.instruction for s in seeds}
    with tempfile.TemporaryDirectory() as tmp, ScriptedServer(model, record=False) as srv:
        out = Path(tmp) / "run"
        config = RunConfig(
            seeds=str(SEEDS),
            rounds=rounds,
            seed=seed,
            base_url=srv.base_url,
            model="scripted-model",
            out=str(out),
            concurrency=32,
            include_seeds=False,  # the evolutions alone: the seeds are no evolution to keep or lose
        )
        started = time.time()
        asyncio.run(execute(config))
        seconds = time.time() - started
        records = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines() if x.strip()]
        rejected = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines() if x.strip()]
    text.update({r["id"]: r["instruction"] for r in records})
    kept_ids = {r["id"] for r in records}
    tried: Counter = Counter()
    kept: Counter = Counter()
    lost: Counter = Counter()
    for r in records + rejected:
        if r.get("round", 0) < 1 or r["operation"] == "mutation" or r.get("parent_id") is None:
            continue
        bucket = "parent >= 450 chars" if len(text[r["parent_id"]]) >= LONG else "parent < 450 chars"
        for key in ("all", bucket, f"round {r['round']}"):
            tried[key] += 1
            kept[key] += r["id"] in kept_ids
        if r["id"] not in kept_ids:
            lost[r["rule"]] += 1
    return {"tried": tried, "kept": kept, "lost": lost, "seconds": seconds, "seeds": len(seeds)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0, help="the run's --seed (operation choices)")
    args = p.parse_args()
    r = measure(args.rounds, args.seed)
    print(f"{r['seeds']} seeds, {args.rounds} rounds, --seed {args.seed}: {r['seconds']:.1f} s")
    print(f"{'in-depth evolutions':<22} {'kept':>6} {'of':>6} {'share':>7}")
    keys = ["all", "parent < 450 chars", "parent >= 450 chars"] + [f"round {n}" for n in range(1, args.rounds + 1)]
    for key in keys:
        n, k = r["tried"][key], r["kept"][key]
        print(f"{key:<22} {k:>6} {n:>6} {k / n if n else 0:>7.1%}")
    print("lost to: " + (", ".join(f"{rule} {n}" for rule, n in r["lost"].most_common()) or "nothing"))


if __name__ == "__main__":
    main()
