"""MinHash signatures of character n-grams and their LSH band keys, a batch of texts at a time in numpy: what
the dedup index (evol.dedup.index) looks candidates up by."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CHUNK = 4096  # texts signed per numpy pass: bounds the arrays at a few MB
_BLOCK = 8192  # n-grams per MinHash block: the (hashes x block) matrix stays in cache
_U64 = np.uint64


def banding(threshold: float) -> tuple[int, int]:
    """(bands, rows) that find at least 99% of the pairs at ``threshold`` on bench.dedup's corpus.

    Fewer rows per band catch less similar pairs but also more near misses, which cost a rapidfuzz call each.
    """
    if threshold >= 0.85:
        return 24, 6
    if threshold >= 0.8:
        return 32, 4
    return 48, 3  # below about 0.75 recall falls anyway: sibling texts of one template swamp the buckets


class MinHashLSH:
    """Band keys of character n-gram MinHash signatures, computed with numpy for a batch of texts at once.

    The hash functions come from a fixed seed, so a text gets the same keys in every process and every run.
    """

    def __init__(self, shingle: int = 4, bands: int = 24, rows: int = 6):
        if shingle < 1 or bands < 1 or rows < 1:
            raise ValueError("shingle, bands and rows must be at least 1")
        self.shingle, self.bands, self.rows = shingle, bands, rows
        rng = np.random.default_rng(20240607)
        k = bands * rows
        # pi_i(x) = a_i * x + b_i mod 2**32 with odd a_i: a permutation of the well-mixed 32-bit n-gram hashes
        self._a = (rng.integers(0, 2**32, k, dtype=np.uint64) | _U64(1)).astype(np.uint32)
        self._b = rng.integers(0, 2**32, k, dtype=np.uint64).astype(np.uint32)
        # a band's rows fold into one 64-bit key; different multipliers per band keep the bands apart
        self._fold = rng.integers(0, 2**64, (bands, rows), dtype=np.uint64) | _U64(1)

    def keys(self, texts: Sequence[str]) -> list[list[int]]:
        """One list of ``bands`` keys per text; an empty text has none (only exact matching applies to it)."""
        out: list[list[int]] = []
        for start in range(0, len(texts), CHUNK):
            keys, keyed = self.key_array(texts[start : start + CHUNK])
            out.extend(k if has else [] for k, has in zip(keys.tolist(), keyed.tolist(), strict=True))
        return out

    def key_array(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(keys, keyed): ``bands`` keys per text as a (texts x bands) uint64 array, and which texts have them (an
        empty text's row is zeros and unused). Python ints for 24 keys a text cost more than the signing did."""
        keyed = np.fromiter(map(bool, texts), bool, count=len(texts))
        keys = np.zeros((len(texts), self.bands), np.uint64)
        full = np.flatnonzero(keyed)
        if full.size:
            sig = self._signatures([texts[i] for i in full.tolist()]).reshape(full.size, self.bands, self.rows)
            keys[full] = (sig.astype(np.uint64) * self._fold).sum(axis=2, dtype=np.uint64)
        return keys, keyed

    def _signatures(self, texts: list[str]) -> np.ndarray:
        grams, lens = self._gram_hashes(texts)
        starts = np.zeros(len(texts), np.int64)
        np.cumsum(lens[:-1], out=starts[1:])
        # hashes x n-grams, so each minimum runs along a contiguous row: several times faster than the transpose
        sig = np.empty((self._a.size, len(texts)), np.uint32)
        # one buffer for every block: a fresh 5 MB array each time cost more in page faults than the adding did
        buf = np.empty((self._a.size, _BLOCK + int(lens.max())), np.uint32)
        a, b = self._a[:, None], self._b[:, None]
        d = 0
        while d < len(texts):
            e = max(d + 1, int(np.searchsorted(starts, starts[d] + _BLOCK, side="right")))
            lo, hi = starts[d], starts[e - 1] + lens[e - 1]
            block = np.multiply(a, grams[None, lo:hi], out=buf[:, : hi - lo])
            block += b
            sig[:, d:e] = np.minimum.reduceat(block, starts[d:e] - lo, axis=1)
            d = e
        return sig.T

    def _gram_hashes(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """A 32-bit hash of every character n-gram, text after text; each text has len(text) n-grams.

        Each text is followed by n-1 padding characters, so a text shorter than n still has an n-gram and its
        last characters count as much as its first.
        """
        n = self.shingle
        lens = np.fromiter(map(len, texts), np.int64, count=len(texts))
        pad = "\0" * (n - 1)
        chars = np.frombuffer((pad.join(texts) + pad).encode("utf-32-le"), dtype=np.uint32)
        # where each n-gram starts in ``chars``: past the padding after every earlier text
        pos = np.arange(int(lens.sum()), dtype=np.int64) + np.repeat(
            np.arange(len(texts), dtype=np.int64) * (n - 1), lens
        )
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
