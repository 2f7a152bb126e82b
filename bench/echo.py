"""How long a run of the evolving prompt's words makes a template echo (``prompt_leak``): false hits on genuine text.

    python -m bench.echo

Every operation template of the general, code and math profiles is rendered around a placeholder parent, and the
175 Self-Instruct seed tasks' instructions, inputs and outputs (text no template wrote) are read as if each were
an evolution of it: every run of N words they share with the template's own text is a false hit. Printed per N:
the false hits, and whether the embedded model's echo from the quick start is still caught.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from evol.prompts import load_profile
from evol.rules.leaks import ECHO_WORDS, find_echo

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "datasets" / "seeds" / "self_instruct_seed_tasks.jsonl"
PARENT = "PARENT PLACEHOLDER"
# what the embedded model wrote in the quick start, from the add_constraints template's last sentence
QUICK_START_ECHO = "Rewrite it with no more than 10 additional words, and add no more than 20 words to the original."


def genuine_texts() -> list[str]:
    out = []
    for line in SEEDS.read_text(encoding="utf-8").splitlines():
        task = json.loads(line)
        out.append(task["instruction"])
        for instance in task["instances"]:
            out += [v for v in (instance.get("input"), instance.get("output")) if v]
    return out


def main() -> None:
    texts = genuine_texts()
    prompts = [
        op.render(PARENT, random.Random(0))
        for name in ("general", "code", "math")
        for op in load_profile(name).operations
    ]
    add_constraints = next(op for op in load_profile("general").operations if op.name == "add_constraints")
    quick = add_constraints.render(PARENT, random.Random(0))
    print(f"{len(texts)} genuine texts x {len(prompts)} templates = {len(texts) * len(prompts)} pairs")
    print(f"{'words in a row':<16}{'false hits':>11}{'quick-start echo':>18}")
    for n in range(3, 9):
        hits = sum(1 for p in prompts for t in texts if find_echo(t, p, PARENT, n))
        caught = "caught" if find_echo(QUICK_START_ECHO, quick, PARENT, n) else "missed"
        mark = "  <- ECHO_WORDS" if n == ECHO_WORDS else ""
        print(f"{n:<16}{hits:>11}{caught:>18}{mark}")


if __name__ == "__main__":
    main()
