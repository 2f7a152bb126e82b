"""How sure a paragraph's language must be, and how long the paragraph, for ``language_changed``: both sides.

    python -m bench.languages

False hits: the 175 Self-Instruct seed tasks' instructions, inputs and outputs read as texts (a non-English
paragraph found in them), and genuine English rewrites of the seeds (each seed with one requirement added, as
the scripted models of the tests write them) and the look-alikes of ``tests/multilingual.py`` read as rewrites
(a language change found where there is none). Hits: every ordered pair of languages of the tasks written in
several languages there (a rewrite that drifted). Printed per setting of CONFIDENT and MIN_WORDS.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from evol.rules import languages as lang
from evol.text import words
from tests.multilingual import LOOKALIKES, drift_pairs
from tests.realistic import ADDITIONS

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "datasets" / "seeds" / "self_instruct_seed_tasks.jsonl"


def seed_texts() -> tuple[list[str], list[tuple[str, str]]]:
    """The seeds' texts, and (seed, genuine English rewrite) pairs."""
    texts, pairs = [], []
    for n, line in enumerate(SEEDS.read_text(encoding="utf-8").splitlines()):
        task = json.loads(line)
        texts.append(task["instruction"])
        for instance in task["instances"]:
            texts += [v for v in (instance.get("input"), instance.get("output")) if v]
        parent = "\n\n".join(x for x in (task["instruction"], task["instances"][0].get("input")) if x)
        pairs += [(parent, f"{parent} {ADDITIONS[(n + k) % len(ADDITIONS)]}") for k in range(2)]
    return texts, pairs


def main() -> None:
    texts, pairs = seed_texts()
    pairs += list(LOOKALIKES)
    drifts = drift_pairs()
    print(f"{len(texts)} seed texts, {len(pairs)} genuine rewrites, {len(drifts)} drifted rewrites")
    print("| CONFIDENT | MIN_WORDS | seed texts read as not English | genuine rewrites dropped | drifts caught |")
    print("|---|---|---|---|---|")
    for confident in (0.9, 0.99, 0.999):
        for min_words in (3, 5, 8):
            foreign = [t for t in texts if lang.languages(t, confident, min_words) - {"en"}]
            dropped = sum(lang.language_change(p, r, confident, min_words) is not None for p, r in pairs)
            caught = sum(lang.language_change(p, r, confident, min_words) == (a, b) for a, b, p, r in drifts)
            mark = " (default)" if (confident, min_words) == (lang.CONFIDENT, lang.MIN_WORDS) else ""
            print(
                f"| {confident}{mark} | {min_words} | {len(foreign)} | {dropped} / {len(pairs)} | "
                f"{caught} / {len(drifts)} |"
            )
    shared = max(len(set(words(p)) & set(words(r))) / len(set(words(p))) for _, _, p, r in drifts)
    print(f"\nthe largest share of its parent's words a drift keeps: {shared:.2f} (MAX_SHARED {lang.MAX_SHARED})")
    foreign = [t for t in texts if lang.languages(t) - {"en"}]
    print("\nseed texts read as not English at the defaults:")
    for t in foreign:
        print(f"  {sorted(lang.languages(t))}: {t[:90]!r}")
    lang.languages.cache_clear()
    sample = [r for _, r in pairs]
    t0 = time.perf_counter()
    for t in sample:
        lang.languages(t)
    print(f"\n{(time.perf_counter() - t0) / len(sample) * 1000:.2f} ms per rewrite read (model loaded, cache cold)")


if __name__ == "__main__":
    main()
