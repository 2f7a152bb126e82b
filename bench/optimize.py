"""``evol optimize`` measured on held-out seeds: does the learned method fail less than the one it started from?

    python -m bench.optimize                 # the shipped Self-Instruct seeds: 90 for the optimizer, 85 held out

A scripted model (``evol.testing.auto_script.AutoScript`` behind ``ScriptedServer`` in this process, real HTTP)
evolves by the method it is given: without the right sentences in the method its evolutions gain nothing, leak
a heading, refer to a table they leave out, or leave out whom they are written for (the answer then asks back);
a timid method fails at nothing and gains nothing. ``python -m evol optimize`` learns a method from the first 90
seeds (the last 50 of them its development set), once with the complexity guard (the default) and once with it
off in effect (``--complexity-tolerance 0.99``). Then each method evolves the 85 other seeds, which the optimizer
never saw, and is measured as a development set is (Optimizer.evaluate: one evolution each, evol's rules, judge
and dedup, the paper's failure kinds, the complexity figure). Printed: a markdown table, one row per method.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from evol.config import RunConfig
from evol.llm.backend import open_backend
from evol.llm.cache import CachedChat, CallCache
from evol.optimize.optimizer import Optimizer, load_report, with_method
from evol.optimize.types import Evaluation, OptimizeOptions
from evol.prompts import load_profile
from evol.rules.clarifications import clarification
from evol.seeds import load_seeds
from evol.testing.auto_script import ASKS_FOR_AUDIENCE, ASKS_FOR_TABLE, AutoScript, answer_for, final_for
from evol.testing.server import ScriptedServer

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "datasets" / "seeds" / "self_instruct_seed_tasks.jsonl"
SEEN = 90  # seeds the optimizer gets (its dev set the last --dev-size of them); the rest are held out


def optimize(seeds: Path, out: Path, url: str, *extra: str) -> None:
    cmd = [sys.executable, "-m", "evol", "-q", "optimize", "--seeds", str(seeds), "--out", str(out), "--base-url", url]
    cmd += ["--steps", "6", "--candidates", "4", "--engine", "local", *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"evol optimize failed:\n{proc.stderr[-2000:]}")


async def held_out(url: str, folder: Path, held: list, methods: dict[str, str]) -> dict[str, Evaluation]:
    """Each method (and the general profile) evolving the held-out seeds, measured as a dev set is."""
    config = RunConfig(seeds=str(folder / "held_out.jsonl"), profile="auto", base_url=url)
    profile = load_profile("auto")
    op = profile.operations[0]
    out: dict[str, Evaluation] = {}
    async with open_backend(config) as (chat, models, config):
        cache = CallCache(folder / "held_out_calls.sqlite")
        try:
            opt = Optimizer(
                config, OptimizeOptions(out=folder), profile, CachedChat(chat, cache), models, train=[], dev=held
            )
            for name, method in methods.items():
                out[name] = await opt.evaluate(with_method(profile, op, method))
            out["profile general"] = await opt.evaluate(load_profile("general"), frozen=False)
        finally:
            cache.close()
    return out


def row(name: str, e: Evaluation, start: Evaluation, kept_asks: int) -> str:
    kinds = e.by_kind
    less = 1 - e.failure_rate / start.failure_rate if start.failure_rate else 0.0
    complexity = "–" if e.complexity is None else f"{e.complexity:.2f}"
    return (
        f"| {name} | {e.failures}/{e.attempts} = {e.failure_rate:.3f} | {less:.0%} | {kinds['stagnant_complexity']} "
        f"| {kinds['insufficient_qualification']} | {kinds['loss_of_key_information']} | {kinds['evol_rules']} "
        f"| {kept_asks} | {complexity} |"
    )


def kept_asks(seeds: list, method: str) -> int:
    """Answers that ask back and still pass the clarification rule (its exemptions: an instruction that asks for a
    message, or for questions): what the scripted model is known to write for these seeds, minus what was caught."""
    asking = [final_for(s.instruction, method) for s in seeds]
    return sum(
        answer_for(f) in (ASKS_FOR_TABLE, ASKS_FOR_AUDIENCE) and clarification(answer_for(f), f) is None for f in asking
    )


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    seeds = [s.instruction for s in load_seeds(SEEDS).seeds]
    seen, held = seeds[:SEEN], load_seeds(SEEDS).seeds[SEEN:]
    with tempfile.TemporaryDirectory() as tmp, ScriptedServer(AutoScript()) as srv:
        folder = Path(tmp)
        (folder / "seeds.jsonl").write_text("".join(json.dumps({"instruction": s}) + "\n" for s in seen))
        (folder / "held_out.jsonl").write_text("".join(json.dumps({"instruction": s.instruction}) + "\n" for s in held))
        held = load_seeds(folder / "held_out.jsonl").seeds  # instruction only: every answer is the scripted model's
        optimize(folder / "seeds.jsonl", folder / "guard", srv.base_url)
        optimize(folder / "seeds.jsonl", folder / "no-guard", srv.base_url, "--complexity-tolerance", "0.99")
        guarded, unguarded = (
            load_report(folder / "guard" / "optimize.json"),
            load_report(folder / "no-guard" / "optimize.json"),
        )
        methods = {
            "starting method (auto profile)": guarded.start.method,
            "optimized, complexity guard on (default)": guarded.best_method,
            "optimized, guard off (--complexity-tolerance 0.99)": unguarded.best_method,
        }
        rates = asyncio.run(held_out(srv.base_url, folder, held, methods))
    start = rates["starting method (auto profile)"]
    print(f"{len(held)} held-out seeds; the optimizer saw the other {SEEN} (dev set: the last 50 of them)\n")
    print(
        "| method | failure rate | fewer failures than the start | stagnant complexity | insufficient qualification "
        "| loss of key information | evol's rules | ask-back answers kept | complexity |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, e in rates.items():
        method = methods.get(name, "")  # the general profile follows no method sentence of the script
        print(row(name, e, start, kept_asks(held, method)))
    print(
        f"\ndev failure rate by step, guard on: {guarded.start.evaluation.failure_rate:.3f} -> "
        + " -> ".join(f"{s.best_failure_rate:.3f}" for s in guarded.steps)
        + f"; guard off: {unguarded.start.evaluation.failure_rate:.3f} -> "
        + " -> ".join(f"{s.best_failure_rate:.3f}" for s in unguarded.steps)
    )


if __name__ == "__main__":
    main()
