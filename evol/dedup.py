"""Exact and near-duplicate detection that scales: each new text is checked against everything kept so far.

Three steps per text: an exact match on the normalised text; then candidates from MinHash LSH over character
n-grams (texts whose signatures agree on all rows of at least one band); then each candidate verified with the
user's rapidfuzz scorer at the user's threshold, so every reported near-duplicate really scores at or above it.
The index only grows, so new texts (a later round, a later run, a merged file) never rebuild it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from rapidfuzz import fuzz, process

from .filters import normalize

SCORERS = {
    "ratio": fuzz.ratio,
    "token_set_ratio": fuzz.token_set_ratio,
    "token_sort_ratio": fuzz.token_sort_ratio,
    "partial_ratio": fuzz.partial_ratio,
    "WRatio": fuzz.WRatio,
}
# these scorers ignore word order, so their shingles are taken over the sorted words
_ORDERLESS = frozenset({"token_set_ratio", "token_sort_ratio"})

_CHUNK = 4096  # texts signed per numpy pass: bounds memory at a few MB per array
_BLOCK = 16384  # n-grams per MinHash block: the (block x hashes) matrix stays in cache
_U64 = np.uint64


@dataclass(frozen=True)
class Match:
    rule: str  # "exact_duplicate", "near_duplicate" or "semantic_duplicate"
    duplicate_of: str
    score: float  # 0..1


class MinHashLSH:
    """Band keys of character n-gram MinHash signatures, computed with numpy for a batch of texts at once.

    The hash functions come from a fixed seed, so a text gets the same keys in every process and every run.
    """

    def __init__(self, shingle: int = 4, bands: int = 20, rows: int = 5):
        if shingle < 1 or bands < 1 or rows < 1:
            raise ValueError("shingle, bands and rows must be at least 1")
        self.shingle, self.bands, self.rows = shingle, bands, rows
        rng = np.random.default_rng(20240607)
        k = bands * rows
        # pi_i(x) = a_i * x + b_i mod 2**32 over well-mixed 32-bit n-gram hashes
        self._a = (rng.integers(0, 2**32, k, dtype=np.uint64) | 1).astype(np.uint32)
        self._b = rng.integers(0, 2**32, k, dtype=np.uint64).astype(np.uint32)
        self._mix = (rng.integers(0, 2**63, (bands, rows), dtype=np.uint64) << _U64(1)) | _U64(1)

    def keys(self, texts: Sequence[str]) -> list[list[int]]:
        """One list of ``bands`` keys per text; an empty text has none (only exact matching applies to it)."""
        out: list[list[int]] = []
        for start in range(0, len(texts), _CHUNK):
            out.extend(self._keys(texts[start:start + _CHUNK]))
        return out

    def _keys(self, texts: Sequence[str]) -> list[list[int]]:
        full = [i for i, t in enumerate(texts) if t]
        if not full:
            return [[] for _ in texts]
        sig = self._signatures([texts[i] for i in full])
        bands = sig.reshape(len(full), self.bands, self.rows).astype(np.uint64)
        keys = (bands * self._mix).sum(axis=2, dtype=np.uint64).tolist()
        out: list[list[int]] = [[] for _ in texts]
        for i, k in zip(full, keys):
            out[i] = k
        return out

    def _signatures(self, texts: list[str]) -> np.ndarray:
        grams, lens = self._gram_hashes(texts)
        starts = np.zeros(len(texts), np.int64)
        np.cumsum(lens[:-1], out=starts[1:])
        sig = np.empty((len(texts), self._a.size), np.uint32)
        d = 0
        while d < len(texts):
            e = max(d + 1, int(np.searchsorted(starts, starts[d] + _BLOCK, side="right")))
            lo, hi = starts[d], starts[e - 1] + lens[e - 1]
            block = grams[lo:hi, None] * self._a
            block += self._b
            sig[d:e] = np.minimum.reduceat(block, starts[d:e] - lo, axis=0)
            d = e
        return sig

    def _gram_hashes(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """A 32-bit hash of every character n-gram, text after text; each text has len(text) n-grams.

        Each text is followed by n-1 padding characters, so texts shorter than n still get one n-gram and
        the last characters count as much as the first.
        """
        n = self.shingle
        lens = np.fromiter(map(len, texts), np.int64, count=len(texts))
        pad = "\0" * (n - 1)
        chars = np.frombuffer((pad.join(texts) + pad).encode("utf-32-le"), dtype=np.uint32)
        # position of each n-gram in ``chars``: skip the padding that precedes each text
        skip = np.repeat(np.arange(len(texts), dtype=np.int64) * (n - 1), lens)
        pos = np.arange(int(lens.sum()), dtype=np.int64) + skip
        h = chars[pos].astype(np.uint64)
        for k in range(1, n):
            h *= _U64(0x100000001B3)
            h += chars[pos + k]
        # splitmix64's finaliser: the polynomial alone leaves the high bits poorly mixed
        h ^= h >> _U64(30)
        h *= _U64(0xBF58476D1CE4E5B9)
        h ^= h >> _U64(27)
        h *= _U64(0x94D049BB133111EB)
        h ^= h >> _U64(31)
        return (h >> _U64(32)).astype(np.uint32), lens


@dataclass
class _Item:
    """A text made ready for checking: its comparison key, its LSH keys."""

    text: str
    norm: str
    keys: list[int]


class Deduper:
    """Keeps the first copy; ``check`` says which kept text a new one duplicates, ``add`` keeps a text.

    ``dedup`` does both for a whole batch, signing the texts with numpy in chunks: the fast path.
    """

    def __init__(self, threshold: float = 0.9, scorer: str = "ratio", *, exact: bool = True, near: bool = True,
                 shingle: int = 4, bands: int = 20, rows: int = 5):
        if not 0 < threshold <= 1:
            raise ValueError("threshold must be in (0, 1]")
        if scorer not in SCORERS:
            raise ValueError(f"scorer must be one of {', '.join(SCORERS)}")
        self.threshold = threshold
        self.scorer = SCORERS[scorer]
        self._orderless = scorer in _ORDERLESS
        self._cutoff = round(threshold * 100, 9)  # 0.9 * 100 is 90.00000000000001
        self.exact, self.near = exact, near
        self.lsh = MinHashLSH(shingle, bands, rows)
        self._ids: list[str] = []
        self._texts: list[str] = []  # normalised, as compared
        self._exact: dict[str, int] = {}
        self._buckets: dict[int, int | list[int]] = {}
        self._last: _Item | None = None  # check() then add() of the same text signs it once

    def __len__(self) -> int:
        return len(self._ids)

    def check(self, text: str) -> Match | None:
        return self._check(self._one(text))

    def add(self, id: str, text: str) -> None:
        self._add(id, self._one(text))

    def dedup(self, ids: Sequence[str], texts: Sequence[str]) -> list[Match | None]:
        """Check each text in order and keep it when it is no duplicate; the same result as check/add one by one."""
        if len(ids) != len(texts):
            raise ValueError("ids and texts differ in length")
        out: list[Match | None] = []
        starts = range(0, len(texts), _CHUNK)
        # a worker signs the next chunks while this thread checks the current one: numpy releases the GIL
        with ThreadPoolExecutor(1) as pool:
            ahead = deque(pool.submit(self._prepare, texts[s:s + _CHUNK]) for s in starts[:2])
            for n, start in enumerate(starts):
                items = ahead.popleft().result()
                if n + 2 < len(starts):
                    ahead.append(pool.submit(self._prepare, texts[starts[n + 2]:starts[n + 2] + _CHUNK]))
                for id, item in zip(ids[start:start + _CHUNK], items):
                    match = self._check(item)
                    if match is None:
                        self._add(id, item)
                    out.append(match)
        return out

    def _one(self, text: str) -> _Item:
        if self._last is None or self._last.text != text:
            self._last = self._prepare([text])[0]
        return self._last

    def _prepare(self, texts: Sequence[str]) -> list[_Item]:
        norms = [normalize(t) for t in texts]
        if self.near:
            shingled = [" ".join(sorted(n.split())) for n in norms] if self._orderless else norms
            keys = self.lsh.keys(shingled)
        else:
            keys = [[] for _ in norms]
        return [_Item(t, n, k) for t, n, k in zip(texts, norms, keys)]

    def _check(self, item: _Item) -> Match | None:
        if self.exact:
            hit = self._exact.get(item.norm)
            if hit is not None:
                return Match("exact_duplicate", self._ids[hit], 1.0)
        if self.near and item.keys:
            found: set[int] = set()
            buckets = self._buckets
            for kept in map(buckets.get, item.keys):
                if kept is None:
                    continue
                if type(kept) is int:
                    found.add(kept)
                else:
                    found.update(kept)
            if found:
                order = sorted(found)  # in keeping order, so ties go to the earliest kept text
                best = process.extractOne(item.norm, [self._texts[i] for i in order], scorer=self.scorer,
                                          score_cutoff=self._cutoff)
                if best is not None:
                    return Match("near_duplicate", self._ids[order[best[2]]], round(best[1] / 100, 4))
        return None

    def _add(self, id: str, item: _Item) -> None:
        pos = len(self._ids)
        self._ids.append(id)
        self._texts.append(item.norm)
        self._exact.setdefault(item.norm, pos)
        buckets = self._buckets
        for key in item.keys:
            kept = buckets.get(key)
            if kept is None:
                buckets[key] = pos
            elif type(kept) is int:
                buckets[key] = [kept, pos]
            else:
                kept.append(pos)


def dedup_texts(ids: Sequence[str], texts: Sequence[str], threshold: float = 0.9, scorer: str = "ratio",
                **options) -> list[Match | None]:
    """One-shot dedup of a batch: for each text, the kept text it duplicates, or None when it is kept."""
    return Deduper(threshold, scorer, **options).dedup(ids, texts)
