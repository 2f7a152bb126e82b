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

import numpy as np
from rapidfuzz import process

from bench.corpus import corpus
from evol.dedup.index import SCORERS, dedup_texts
from evol.text import normalize


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
