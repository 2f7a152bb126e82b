"""How sure a paragraph's language must be, and how long the paragraph, for ``language_changed``: both sides.

    python -m bench.languages

False hits: the 175 Self-Instruct seed tasks' instructions, inputs and outputs read as texts (a non-English
paragraph found in them), and genuine English rewrites of the seeds (each seed with one requirement added, as
the scripted models of the tests write them) and the look-alikes of ``tests/multilingual.py`` read as rewrites
(a language change found where there is none). Hits: every ordered pair of languages of the tasks written in
several languages there (a rewrite that drifted). Printed per setting of CONFIDENT and MIN_WORDS.

Then ``language_changed_response`` per setting of FUNCTION_SHARE: false hits on the seed tasks' own answers and
on answers the conversation asked for in another language (``tests/multilingual.py``'s look-alikes), made-up
answers (bench.server's pseudo-words, which the identifier reads as Tagalog or Indonesian) read as a language,
and answers that drifted (every ordered pair of a task's answers in several languages), with the CPU an answer
costs.

    python -m bench.languages --base-url http://127.0.0.1:8765/v1   # e.g. `python -m evol serve-local`

also sends tests/multilingual.py's tasks in English, French, Spanish and German to a model and prints, for each
answer, the languages read in it and the rule's verdict: what a real model does with instructions in other
languages.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from bench.server import prose
from evol.rules import languages as lang
from evol.text import words
from tests.multilingual import ANSWER_LOOKALIKES, LOOKALIKES, answer_drifts, drift_pairs
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
    answers()


def seed_answers() -> list[tuple[str, str]]:
    """(instruction with its input, the seed's own output) for every instance of the seed tasks."""
    pairs = []
    for line in SEEDS.read_text(encoding="utf-8").splitlines():
        task = json.loads(line)
        for instance in task["instances"]:
            instruction = "\n\n".join(x for x in (task["instruction"], instance.get("input")) if x)
            pairs.append((instruction, instance.get("output") or ""))
    return pairs


def answers() -> None:
    seeds, drifts = seed_answers(), answer_drifts()
    rng = random.Random(1)
    made_up = [prose(rng, 200) for _ in range(2000)]
    print(
        f"\n{len(seeds)} seed answers, {len(ANSWER_LOOKALIKES)} answers asked for in another language, "
        f"{len(made_up)} made-up answers, {len(drifts)} drifted answers"
    )
    print(
        "| FUNCTION_SHARE | seed answers dropped | asked-for answers dropped | made-up answers read as a language | drifts caught |"
    )
    print("|---|---|---|---|---|")
    default = lang.FUNCTION_SHARE
    try:
        for share in (0.0, 0.05, 0.1, 0.15, 0.2):
            lang.FUNCTION_SHARE = share
            seed_hits = sum(lang.answer_language_change(i, a) is not None for i, a in seeds)
            asked = sum(lang.answer_language_change(i, a, e) is not None for i, a, e in ANSWER_LOOKALIKES)
            read = sum(bool(lang.answer_languages(a)) for a in made_up)
            caught = sum(lang.answer_language_change(i, a) == (x, y) for x, y, i, a in drifts)
            mark = " (default)" if share == default else ""
            print(
                f"| {share}{mark} | {seed_hits} / {len(seeds)} | {asked} / {len(ANSWER_LOOKALIKES)} | "
                f"{read} / {len(made_up)} | {caught} / {len(drifts)} |"
            )
    finally:
        lang.FUNCTION_SHARE = default
    t0 = time.process_time()
    for a in made_up:
        lang.answer_languages(a)
    print(f"\n{(time.process_time() - t0) / len(made_up) * 1000:.2f} ms CPU per answer read (200 words)")


def ask(base_url: str, model: str) -> None:
    import httpx

    from tests.multilingual import TASKS

    print("| task | instruction | answer read as | verdict | answer opens |\n|---|---|---|---|---|")
    with httpx.Client(base_url=base_url, timeout=600) as client:
        for n, task in enumerate(TASKS):
            for code in ("en", "fr", "es", "de"):
                if code not in task:
                    continue
                body = {"model": model, "messages": [{"role": "user", "content": task[code]}], "max_tokens": 120}
                reply = client.post("/chat/completions", json={**body, "seed": n}).json()
                answer = reply["choices"][0]["message"]["content"] or ""
                moved = lang.answer_language_change(task[code], answer)
                verdict = f"dropped ({moved[0]} -> {moved[1]})" if moved else "kept"
                opening = " ".join(answer.split())[:70].replace("|", "/")
                print(f"| {n} | {code} | {sorted(lang.answer_languages(answer))} | {verdict} | {opening} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", help="also ask this OpenAI-compatible endpoint the tasks in four languages")
    parser.add_argument("--model", default="local")
    args = parser.parse_args()
    if args.base_url:
        ask(args.base_url, args.model)
    else:
        main()
