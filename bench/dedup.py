"""Near-duplicate removal at scale: time, peak memory, and recall/precision against exhaustive rapidfuzz.

    python -m bench.dedup                        # 10k, 50k and 250k instructions
    python -m bench.dedup --sizes 10000,50000    # a quicker run

The corpus: the 175 shipped Self-Instruct seeds plus distinct instructions drawn from combinatorial templates
(a main clause and two detail sentences, so two draws share little beyond their skeleton), and 30% variants of
them made by 1-4 controlled edits (word swaps, insertions, deletions, punctuation, case, reordering, synonyms),
some of variants, all shuffled. Each size runs in a fresh process, so its peak RSS is its own.

Recall and precision: for a sample of the items (all of them up to --sample), exhaustive rapidfuzz over every
text the run kept before the item says whether the item has a near-duplicate at the threshold. Recall is the
share of those the run removed; precision is the share of the run's removals in the sample that it confirms.
For ratio and token_sort_ratio an exact bound (shared characters) skips the pairs that cannot reach the
threshold, so auditing 10,000 items against 175,000 kept ones takes seconds, not minutes.
"""

from __future__ import annotations

import argparse
import random
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from rapidfuzz import process

from evol.dedup import SCORERS, dedup_texts
from evol.filters import normalize
from evol.seeds import read_rows

SEEDS = Path(__file__).resolve().parent.parent / "datasets" / "seeds" / "self_instruct_seed_tasks.jsonl"

VERBS = ["Write", "Compose", "Draft", "Create", "Produce", "Prepare", "Outline", "Sketch"]
FORMS = [
    "poem",
    "short story",
    "blog post",
    "limerick",
    "speech",
    "product description",
    "news report",
    "letter",
    "dialogue",
    "haiku sequence",
    "song chorus",
    "movie pitch",
    "recipe card",
    "travel guide",
    "book review",
    "press release",
    "lesson plan",
    "sonnet",
    "riddle",
    "fable",
]
ADJ = [
    "ancient",
    "frozen",
    "electric",
    "forgotten",
    "tiny",
    "enormous",
    "underwater",
    "medieval",
    "futuristic",
    "haunted",
    "noisy",
    "silent",
    "golden",
    "crowded",
    "abandoned",
    "floating",
    "invisible",
    "rusty",
    "sleepy",
    "curious",
    "volcanic",
    "tropical",
    "clockwork",
    "paper",
    "glass",
    "desert",
    "arctic",
    "neon",
    "wooden",
    "secret",
]
NOUN = [
    "lighthouse",
    "library",
    "bakery",
    "robot",
    "garden",
    "train station",
    "submarine",
    "violin",
    "market",
    "bicycle",
    "castle",
    "museum",
    "orchard",
    "observatory",
    "ferry",
    "dragon",
    "laboratory",
    "circus",
    "bridge",
    "village",
    "spaceship",
    "river",
    "mountain pass",
    "telescope",
    "carnival",
    "greenhouse",
    "mailbox",
    "umbrella",
    "typewriter",
    "chess club",
    "volcano",
    "island",
    "factory",
    "theatre",
    "monastery",
    "harbor",
    "windmill",
    "tram",
    "pharmacy",
    "zoo",
]
AUDIENCE = [
    "children",
    "retirees",
    "engineers",
    "first-year students",
    "tourists",
    "nurses",
    "farmers",
    "software developers",
    "teenagers",
    "investors",
    "chefs",
    "historians",
    "musicians",
    "new parents",
    "athletes",
    "librarians",
    "pilots",
    "teachers",
    "gardeners",
    "lawyers",
]
CONSTRAINT = [
    "in under 100 words",
    "using only simple words",
    "without using the letter e",
    "in the second person",
    "with a surprising ending",
    "as a numbered list",
    "in a formal tone",
    "with three rhyming couplets",
    "from the point of view of a cat",
    "using exactly five sentences",
    "with a hopeful message",
    "in the style of a weather forecast",
    "including a short quote",
    "with a call to action",
    "avoiding any technical jargon",
    "in a playful voice",
    "ending with a question",
    "mentioning a specific year",
    "with a title in capital letters",
    "in two paragraphs",
]
CONCEPTS = [
    "photosynthesis",
    "compound interest",
    "recursion",
    "plate tectonics",
    "supply and demand",
    "entropy",
    "vaccination",
    "machine learning",
    "the water cycle",
    "inflation",
    "natural selection",
    "public key cryptography",
    "the greenhouse effect",
    "probability",
    "blockchain",
    "the immune system",
    "gravity",
    "democracy",
    "opportunity cost",
    "neural plasticity",
    "ocean tides",
    "continental drift",
    "the placebo effect",
    "game theory",
    "bacterial resistance",
    "carbon dating",
    "the stock market",
    "nuclear fusion",
    "the Doppler effect",
    "cognitive bias",
]
DEVICES = [
    "a kitchen analogy",
    "a sports metaphor",
    "a short story",
    "a step-by-step example",
    "a simple diagram description",
    "a comparison with traffic",
    "a question-and-answer format",
    "an everyday object",
    "a historical anecdote",
    "a board game analogy",
    "a gardening metaphor",
    "three bullet points",
]
FOLLOWUPS = [
    "suggest one experiment to try at home",
    "list two common misconceptions",
    "end with a quiz question",
    "mention one open research question",
    "give a real-world application",
    "name a famous scientist involved",
    "estimate how long it takes to learn",
    "describe a typical mistake",
    "propose a follow-up reading",
    "relate it to climate change",
    "add a fun fact",
    "compare it with a related idea",
]
LANGS = ["Python", "JavaScript", "Rust", "Go", "Java", "C++", "Ruby", "Kotlin", "TypeScript", "Haskell", "Swift", "SQL"]
CODE_TASKS = [
    "parses a CSV file of {noun} records",
    "finds the longest palindrome in a string",
    "merges two sorted lists of {noun} names",
    "counts word frequencies in a text",
    "validates an email address",
    "computes the median of a stream of numbers",
    "detects cycles in a directed graph",
    "converts Roman numerals to integers",
    "schedules {noun} maintenance tasks by priority",
    "compresses a string with run-length encoding",
    "finds the shortest path between two {noun} locations",
    "rotates a matrix by 90 degrees",
    "deduplicates {noun} entries by name",
    "implements an LRU cache",
    "tokenizes arithmetic expressions",
    "checks whether a sudoku grid is valid",
]
CODE_CONSTRAINTS = [
    "without external libraries",
    "in linear time",
    "with unit tests",
    "using recursion",
    "with type annotations",
    "and explain its complexity",
    "handling empty input gracefully",
    "using constant extra memory",
    "with clear error messages",
    "in fewer than 30 lines",
]
EVENTS = [
    "birthday party",
    "team retreat",
    "wedding",
    "science fair",
    "book club meeting",
    "charity run",
    "family reunion",
    "hackathon",
    "cooking class",
    "film night",
    "garden tour",
    "chess tournament",
]
PLACES = [
    "Lisbon",
    "Kyoto",
    "a small mountain town",
    "Nairobi",
    "a seaside village",
    "Montreal",
    "Reykjavik",
    "Buenos Aires",
    "a city park",
    "Hanoi",
    "a farmhouse",
    "Edinburgh",
    "Cape Town",
    "Oslo",
    "Marrakesh",
]
DURATIONS = ["one-day", "two-day", "weekend", "week-long", "three-hour", "evening"]
ASPECTS = [
    "cost",
    "safety",
    "environmental impact",
    "ease of use",
    "long-term value",
    "maintenance effort",
    "speed",
    "reliability",
    "social impact",
    "learning curve",
]
FORMATS = [
    "answer in a table",
    "give a one-paragraph verdict",
    "use bullet points",
    "rank them from best to worst",
    "end with a recommendation",
    "keep it under 150 words",
    "include a pros and cons list",
    "cite one example for each",
]
GOALS = [
    "save money on groceries",
    "sleep better",
    "learn a new language",
    "reduce screen time",
    "stay focused at work",
    "make new friends in a new city",
    "cut household energy use",
    "prepare for a marathon",
    "organize a cluttered garage",
    "improve public speaking",
    "start journaling",
    "eat more vegetables",
]
CONTEXTS = [
    "on a tight budget",
    "while working night shifts",
    "with two small kids",
    "as a university student",
    "after moving abroad",
    "during a busy holiday season",
    "while recovering from an injury",
    "in a shared apartment",
    "as a remote worker",
    "in under a month",
]
TONES = [
    "warm",
    "neutral",
    "enthusiastic",
    "dry",
    "formal",
    "casual",
    "gentle",
    "urgent",
    "witty",
    "calm",
    "solemn",
    "encouraging",
    "skeptical",
    "nostalgic",
    "matter-of-fact",
]
LENGTHS = [
    "short",
    "under two hundred words",
    "to a single page",
    "brief",
    "around three paragraphs",
    "compact",
    "under ten lines",
    "moderate",
    "to five bullet points",
    "tight",
]
FIELDS = [
    "cooking",
    "astronomy",
    "football",
    "gardening",
    "banking",
    "music history",
    "sailing",
    "architecture",
    "medicine",
    "chess",
    "video games",
    "ancient Rome",
    "beekeeping",
    "aviation",
    "fashion",
    "mountaineering",
    "photography",
    "law",
    "robotics",
    "ocean biology",
]
READERS = [
    "has never heard of the topic",
    "is in a hurry",
    "reads on a phone",
    "is a non-native speaker",
    "already knows the basics",
    "is skeptical of the idea",
    "will read it aloud",
    "is twelve years old",
    "is an expert looking for gaps",
    "prefers concrete numbers",
    "is easily bored",
    "has a visual impairment",
    "is preparing for an exam",
    "works in a noisy factory",
    "is planning a presentation",
]
ENDINGS = [
    "a short joke",
    "an open question",
    "a practical tip",
    "a surprising statistic",
    "a one-line summary",
    "a challenge for the reader",
    "a famous quote",
    "a warning",
    "a personal anecdote",
    "a list of sources",
]

MAIN = [
    lambda r: (
        f"{r.choice(VERBS)} a {r.choice(FORMS)} about the {r.choice(ADJ)} {r.choice(NOUN)} for {r.choice(AUDIENCE)}, {r.choice(CONSTRAINT)}."
    ),
    lambda r: (
        f"Explain {r.choice(CONCEPTS)} to {r.choice(AUDIENCE)} using {r.choice(DEVICES)}, and {r.choice(FOLLOWUPS)}."
    ),
    lambda r: (
        f"Write a {r.choice(LANGS)} function that {r.choice(CODE_TASKS).format(noun=r.choice(NOUN))} {r.choice(CODE_CONSTRAINTS)}."
    ),
    lambda r: (
        f"Plan a {r.choice(DURATIONS)} {r.choice(EVENTS)} in {r.choice(PLACES)} for {r.choice(AUDIENCE)}, {r.choice(CONSTRAINT)}."
    ),
    lambda r: (
        f"Compare the {r.choice(ADJ)} {r.choice(NOUN)} and the {r.choice(ADJ)} {r.choice(NOUN)} in terms of {r.choice(ASPECTS)}; {r.choice(FORMATS)}."
    ),
    lambda r: (
        f"What are {r.randint(3, 12)} practical ways to {r.choice(GOALS)} {r.choice(CONTEXTS)}? {r.choice(FORMATS).capitalize()}."
    ),
    lambda r: (
        f"Imagine you run a {r.choice(ADJ)} {r.choice(NOUN)} in {r.choice(PLACES)}. {r.choice(VERBS)} a {r.choice(FORMS)} for {r.choice(AUDIENCE)} {r.choice(CONSTRAINT)}."
    ),
    lambda r: (
        f"Summarize the history of {r.choice(CONCEPTS)} for {r.choice(AUDIENCE)} {r.choice(CONSTRAINT)}, then {r.choice(FOLLOWUPS)}."
    ),
]
DETAILS = [
    lambda r: f"Mention the {r.choice(ADJ)} {r.choice(NOUN)} at least once.",
    lambda r: f"Keep the tone {r.choice(TONES)} and the length {r.choice(LENGTHS)}.",
    lambda r: f"Include {r.randint(2, 9)} examples drawn from {r.choice(FIELDS)}.",
    lambda r: f"Assume the reader {r.choice(READERS)}.",
    lambda r: f"Finish with {r.choice(ENDINGS)} about {r.choice(FIELDS)}.",
    lambda r: f"Refer to {r.choice(FIELDS)} and {r.choice(FIELDS)} where it helps.",
    lambda r: f"Avoid {r.choice(ENDINGS)[2:]}s and anything about the {r.choice(NOUN)}.",
    lambda r: f"Write it for someone who {r.choice(READERS)} and likes {r.choice(FIELDS)}.",
    lambda r: f"Use a {r.choice(TONES)} voice, as if talking to {r.choice(AUDIENCE)} in {r.choice(PLACES)}.",
]

FILLERS = [
    "please",
    "briefly",
    "also",
    "really",
    "carefully",
    "now",
    "just",
    "clearly",
    "quickly",
    "kindly",
    "simply",
    "then",
]
SYNONYMS = {
    "write": "compose",
    "compose": "write",
    "explain": "describe",
    "describe": "explain",
    "short": "brief",
    "list": "enumerate",
    "give": "provide",
    "create": "make",
    "generate": "produce",
    "find": "identify",
    "simple": "easy",
    "using": "with",
    "about": "on",
    "following": "given",
    "help": "assist",
    "plan": "organize",
    "ways": "methods",
    "suggest": "propose",
    "small": "little",
    "big": "large",
}
PUNCT = [",", ".", "!", "?", ";", ":"]


def distinct(rng: random.Random, n: int) -> list[str]:
    """``n`` different instructions: a main clause and two different detail sentences each."""
    out: set[str] = set()
    while len(out) < n:
        first, second = rng.sample(DETAILS, 2)
        out.add(" ".join((rng.choice(MAIN)(rng), first(rng), second(rng))))
    return sorted(out)  # sorted: set order changes with the process's string hashing


def edit(rng: random.Random, text: str) -> str:
    """One controlled edit at the word level."""
    words = text.split(" ")
    kind = rng.choice(("swap", "insert", "delete", "punct", "case", "reorder", "synonym"))
    i = rng.randrange(len(words))
    if kind == "swap" and len(words) > 2:
        j = min(i + 1, len(words) - 1)
        words[i], words[j] = words[j], words[i]
    elif kind == "insert":
        words.insert(i, rng.choice(FILLERS))
    elif kind == "delete" and len(words) > 4:
        del words[i]
    elif kind == "punct":
        words[i] = words[i].rstrip("".join(PUNCT)) + rng.choice([*PUNCT, ""])
    elif kind == "case":
        words[i] = words[i].upper() if rng.random() < 0.3 else words[i].swapcase()
    elif kind == "reorder" and len(words) > 4:
        word = words.pop(i)
        words.insert(max(0, min(len(words), i + rng.choice((-3, -2, 2, 3)))), word)
    elif kind == "synonym":
        words[i] = SYNONYMS.get(words[i].lower(), rng.choice(FILLERS))
    return " ".join(words)


def corpus(n: int, seed: int = 0, variant_share: float = 0.3) -> list[str]:
    """``n`` instructions: seeds and distinct ones, then variants (of those, or of earlier variants), shuffled."""
    rng = random.Random(seed)
    seeds = [row.instruction for row in read_rows(SEEDS)]
    bases = (seeds + distinct(rng, max(0, n - int(n * variant_share) - len(seeds))))[:n]
    items = list(bases)
    while len(items) < n:
        text = rng.choice(bases if rng.random() < 0.7 else items)
        for _ in range(rng.choice((1, 1, 2, 2, 3, 4))):
            text = edit(rng, text)
        items.append(text)
    rng.shuffle(items)
    return items


def measure(n: int, threshold: float, scorer: str, shingle: int, sample: int, seed: int) -> dict:
    """Dedup a corpus of ``n`` (timed), then audit a sample against exhaustive rapidfuzz (not timed)."""
    texts = corpus(n, seed)
    ids = [str(i) for i in range(n)]
    wall, cpu = time.perf_counter(), time.process_time()
    matches = dedup_texts(ids, texts, threshold, scorer, shingle=shingle)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    recall, precision, audited = audit(texts, matches, threshold, scorer, sample, seed)
    return {
        "n": n,
        "wall": wall,
        "cpu": cpu,
        "peak_mb": peak_mb,
        "audited": audited,
        "recall": recall,
        "precision": precision,
        "exact": sum(m is not None and m.rule == "exact_duplicate" for m in matches),
        "near": sum(m is not None and m.rule == "near_duplicate" for m in matches),
    }


def audit(
    texts: list[str], matches: list, threshold: float, scorer: str, sample: int, seed: int
) -> tuple[float, float, int]:
    """Recall and precision of the run's decisions on a sample, by exhaustive rapidfuzz over the earlier kept texts."""
    cutoff = round(threshold * 100, 9)
    norms = [normalize(t) for t in texts]
    kept_pos = np.array([i for i, m in enumerate(matches) if m is None])
    kept = [norms[i] for i in kept_pos]
    picks = np.array(sorted(random.Random(seed + 1).sample(range(len(texts)), min(sample, len(texts)))))
    bound = SharedChars(norms, kept_pos) if scorer in SharedChars.SCORERS else None
    truth = np.zeros(len(picks), bool)
    for start in range(0, len(picks), 64):
        pos = picks[start : start + 64]
        upto = int(np.searchsorted(kept_pos, pos[-1]))  # only texts kept before the last query matter
        queries = [norms[p] for p in pos]
        if bound is None:
            scores = process.cdist(
                queries, kept[:upto], scorer=SCORERS[scorer], score_cutoff=cutoff, dtype=np.float64, workers=-1
            )
            scores[kept_pos[None, :upto] >= pos[:, None]] = 0  # each query against what was kept before it
            truth[start : start + len(pos)] = scores.max(axis=1, initial=0) >= cutoff
        else:  # score only the pairs that can reach the cutoff, each query against what was kept before it
            q, k = np.nonzero((kept_pos[None, :upto] < pos[:, None]) & bound.may_reach(pos, upto, cutoff / 100))
            scores = process.cpdist(
                [queries[i] for i in q],
                [kept[i] for i in k],
                scorer=SCORERS[scorer],
                score_cutoff=cutoff,
                dtype=np.float64,
                workers=-1,
            )
            truth[start + q[scores >= cutoff]] = True
    removed = np.array([matches[p] is not None for p in picks])
    hits = int((truth & removed).sum())
    return hits / max(1, int(truth.sum())), hits / max(1, int(removed.sum())), len(picks)


class SharedChars:
    """An exact upper bound on ratio for many pairs at once, so the exhaustive audit skips hopeless pairs.

    ratio = 2 * LCS / (len a + len b), and the LCS of two texts is at most the characters they share as
    multisets: the sum over characters of min(count in a, count in b). Characters are folded into 32 buckets
    (folding only raises the bound) and counts are coded in unary, so the sum of minima is a matrix product;
    counts above a bucket's cap add their excess to the bound, which stays an upper bound.
    """

    SCORERS = ("ratio", "token_sort_ratio")  # both compare the texts' characters, sorted words or not

    def __init__(self, norms: list[str], kept_pos: np.ndarray):
        self.counts = np.array(
            [np.bincount(np.frombuffer(n.encode("utf-32-le"), np.uint32) % 32, minlength=32) for n in norms],
            dtype=np.int32,
        ).reshape(len(norms), 32)
        self.caps = np.maximum(1, np.percentile(self.counts, 99, axis=0).astype(int))
        self.lens = self.counts.sum(axis=1)
        self.kept_pos = kept_pos
        self.kept_unary = self._unary(self.counts[kept_pos])

    def _unary(self, counts: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [counts[:, [c]] > np.arange(cap) for c, cap in enumerate(self.caps)], axis=1, dtype=np.float32
        )

    def may_reach(self, pos: np.ndarray, upto: int, cutoff: float) -> np.ndarray:
        shared = self._unary(self.counts[pos]) @ self.kept_unary[:upto].T
        shared += np.maximum(0, self.counts[pos] - self.caps).sum(axis=1)[:, None]
        total = self.lens[pos][:, None] + self.lens[self.kept_pos[:upto]][None, :]
        return 2 * shared >= (cutoff - 1e-6) * total  # the margin keeps float rounding from dropping a pair


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dedup", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,50000,250000", help="comma-separated corpus sizes")
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--scorer", choices=list(SCORERS), default="ratio")
    parser.add_argument("--shingle", type=int, default=4)
    parser.add_argument("--sample", type=int, default=10000, help="items audited by exhaustive rapidfuzz per size")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    print(
        f"threshold {args.threshold}, scorer {args.scorer}, shingle {args.shingle}; "
        f"targets at 250k: < 60 s, < 2048 MB, recall >= 0.95, precision >= 0.99"
    )
    print(
        f"{'items':>8} {'wall s':>7} {'cpu s':>7} {'peak MB':>8} {'exact':>7} {'near':>7} {'audited':>8} "
        f"{'recall':>7} {'precision':>9} {'us/item':>8}"
    )
    results = []
    for n in sizes:
        # a fresh process per size: its peak RSS is this size's alone
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            r = pool.submit(measure, n, args.threshold, args.scorer, args.shingle, args.sample, args.seed).result()
        results.append(r)
        print(
            f"{r['n']:>8} {r['wall']:>7.1f} {r['cpu']:>7.1f} {r['peak_mb']:>8.0f} {r['exact']:>7} {r['near']:>7} "
            f"{r['audited']:>8} {r['recall']:>7.4f} {r['precision']:>9.4f} {r['wall'] / r['n'] * 1e6:>8.1f}",
            flush=True,
        )
    if len(results) > 1:
        first, last = results[0], results[-1]
        growth = np.log(last["wall"] / first["wall"]) / np.log(last["n"] / first["n"])
        print(f"time grows as n^{growth:.2f} from {first['n']} to {last['n']} items (n^1 is linear, n^2 quadratic)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
