"""Exact, near and (optionally) semantic duplicate detection: each new text is checked against everything kept so far.

Per text: an exact match on the normalised text (against every kept text); then candidates from MinHash LSH over
character n-grams (evol.dedup.minhash: kept texts whose signature agrees with this one on every row of at least one
band); then each candidate verified with
the user's rapidfuzz scorer at the user's threshold, so every near-duplicate reported really scores at or above
it. The index only grows: texts from a later round, a later run or a merged file never rebuild it.

A text may name its lineage (in a run: its seed id). Near and semantic matches skip kept texts of the same
lineage: an in-depth evolution is meant to stay close to its ancestors, and whether it gained anything over its
parent is the judge's question, not dedup's. Exact repeats are caught whatever their lineage.
"""

from __future__ import annotations

import threading
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice

import numpy as np
from rapidfuzz import fuzz, process

from evol.dedup.minhash import CHUNK, MinHashLSH, banding
from evol.dedup.snapshot import pack, unpack
from evol.text import normalize

SCORERS = {
    "ratio": fuzz.ratio,
    "token_set_ratio": fuzz.token_set_ratio,
    "token_sort_ratio": fuzz.token_sort_ratio,
    "partial_ratio": fuzz.partial_ratio,
    "WRatio": fuzz.WRatio,
}
# these scorers ignore word order, so their n-grams are taken over the sorted words
_ORDERLESS = frozenset({"token_set_ratio", "token_sort_ratio"})

_FRESH_KEYS = 1 << 18  # band keys held in a dict before they are merged into the sorted arrays (~20 MB)

_BUCKETS = 64  # character-count buckets of a text's histogram (Deduper's cheap bound before rapidfuzz)
_FULL = 255  # a histogram bucket that would pass this holds 255 in every bucket (see _histograms)

Embed = Callable[[list[str]], np.ndarray]


def _bucket_table() -> np.ndarray:
    """Code point -> histogram bucket: space, a-z and 0-9 (what normalised text is mostly made of) one each, the
    rest of Unicode folded into the other 27."""
    table = (np.arange(0x110000, dtype=np.uint32) % (_BUCKETS - 37) + 37).astype(np.uint8)
    for i, c in enumerate(" abcdefghijklmnopqrstuvwxyz0123456789"):
        table[ord(c)] = i
    return table


_TABLE: np.ndarray | None = None


def _histograms(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(histograms, lengths): each text's characters counted into ``_BUCKETS`` buckets, uint8 (len(texts) x 64).

    Two strings' longest common subsequence is at most the sum over buckets of the smaller count, so
    ``fuzz.ratio`` = 200 LCS / (len1 + len2) is at most 200 * that sum / (len1 + len2): a pair whose bound is below
    the threshold cannot score above it. A text with a bucket of 255 or more gets 255 in all of them and is never
    ruled out that way (its bound with any text is at least the other's length, and two such are always checked).
    """
    global _TABLE
    if _TABLE is None:
        _TABLE = _bucket_table()
    lens = np.fromiter(map(len, texts), np.int64, count=len(texts))
    chars = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
    cells = np.repeat(np.arange(len(texts), dtype=np.int64) * _BUCKETS, lens)
    cells += _TABLE[chars]
    counts = np.bincount(cells, minlength=len(texts) * _BUCKETS).reshape(len(texts), _BUCKETS)
    full = (counts >= _FULL).any(axis=1)
    counts[full] = _FULL
    return counts.astype(np.uint8), lens


@dataclass(frozen=True)
class Match:
    rule: str  # "exact_duplicate", "near_duplicate" or "semantic_duplicate"
    duplicate_of: str
    score: float  # 0..1


_PAIRS = 1 << 16  # pairs bounded per numpy pass: the gathered histograms stay at a few MB


def _bounded(
    qh: np.ndarray, ql: np.ndarray, qi: np.ndarray, ch: np.ndarray, cl: np.ndarray, ci: np.ndarray, cutoff: float
) -> np.ndarray:
    """Which pairs (text ``qi[n]`` of ``qh``/``ql``, text ``ci[n]`` of ``ch``/``cl``: histograms and lengths) may score
    ``cutoff`` or more with ``fuzz.ratio``; the others provably score less (see ``_histograms``). The bound is
    loosened by a relative 1e-9, so float rounding can only let a pair through, never rule one out."""
    keep = np.empty(qi.size, bool)
    for s in range(0, qi.size, _PAIRS):
        a, b = qi[s : s + _PAIRS], ci[s : s + _PAIRS]
        # np.take gathers whole rows about three times faster than indexing with an array does
        hq, hc = np.take(qh, a, axis=0), np.take(ch, b, axis=0)
        unbounded = (hq[:, 0] == _FULL) & (hc[:, 0] == _FULL)
        # 64 buckets of at most 255 sum to at most 16,320: 16 bits hold it, and numpy adds them faster than 64
        common = np.minimum(hq, hc, out=hq).sum(axis=1, dtype=np.uint16)
        keep[s : s + _PAIRS] = ((200.0 * (1 + 1e-9)) * common >= cutoff * (np.take(ql, a) + np.take(cl, b))) | unbounded
    return keep


def _inner_pairs(keys: np.ndarray, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(later, earlier) for every two texts of a chunk that share a band key: ``keys`` sorted, and ``owner`` (each
    key's text) ascending among equal keys."""
    n = keys.size
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    run_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    counts = np.arange(n) - run_start  # the keys before each one in its run
    total = int(counts.sum())
    if not total:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    later = np.repeat(np.arange(n), counts)
    earlier = np.repeat(run_start, counts) + (np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts))
    who, cand = owner[later], owner[earlier]
    keep = cand != who  # one text's own bands may share a key
    return who[keep], cand[keep]


def _distinct(values: np.ndarray) -> np.ndarray:
    """``np.unique`` of a 1-d array, by sorting: numpy 2.4's unique took ten times as long on a chunk's pairs."""
    values = np.sort(values)
    return values[np.r_[True, values[1:] != values[:-1]]] if values.size else values


@dataclass
class Prepared:
    """A text made ready for checking (:meth:`Deduper.prepared`)."""

    text: str
    norm: str  # what the scorer compares
    keys: list[int]  # LSH band keys
    vector: np.ndarray | None = None  # unit embedding, with semantic dedup only
    hist: np.ndarray | None = None  # character histogram row (_histograms), with the ratio scorer only


@dataclass
class Chunk:
    """Texts prepared together, as arrays: band keys (``keyed`` says which rows hold any), histograms and lengths
    (``hist`` None: no bound applies); :class:`Prepared` items only when asked for. ``sorted_keys`` holds the keyed
    rows' band keys in order, ``key_rows`` each one's row (ascending among equal keys): what the index looks up and
    stores, sorted where the chunk is prepared (in a child process, for a large file) rather than where it is
    checked."""

    texts: Sequence[str]
    norms: list[str]
    keys: np.ndarray
    keyed: np.ndarray
    vectors: np.ndarray | Sequence[None]  # unit embeddings, with semantic dedup only
    hist: np.ndarray | None
    lens: np.ndarray
    sorted_keys: np.ndarray
    key_rows: np.ndarray
    ids: Sequence[str] = ()
    lineages: Sequence[str | None] = ()

    @property
    def items(self) -> list[Prepared]:
        keys = [k if has else [] for k, has in zip(self.keys.tolist(), self.keyed.tolist(), strict=True)]
        rows: Sequence[np.ndarray | None] = [None] * len(self.norms) if self.hist is None else list(self.hist)
        return [Prepared(*f) for f in zip(self.texts, self.norms, keys, self.vectors, rows, strict=True)]


@dataclass(frozen=True)
class Preparer:
    """Texts to a :class:`Chunk` (normalised, band keys, histograms) as a :class:`Deduper` would prepare them,
    embeddings aside: picklable, so another process can prepare what the index checks (``Deduper.dedup_chunks``)."""

    lsh: MinHashLSH
    near: bool
    orderless: bool
    bound: bool

    def __call__(self, texts: Sequence[str]) -> Chunk:
        norms = [normalize(t) for t in texts]
        if self.near:
            keys, keyed = self.lsh.key_array([" ".join(sorted(n.split())) for n in norms] if self.orderless else norms)
        else:
            keys, keyed = np.zeros((len(norms), self.lsh.bands), np.uint64), np.zeros(len(norms), bool)
        if self.bound:
            hist, lens = _histograms(norms)
        else:
            hist, lens = None, np.fromiter(map(len, norms), np.int64, count=len(norms))
        rows = np.flatnonzero(keyed)
        flat, owner = keys[rows].ravel(), np.repeat(rows, keys.shape[1])
        order = np.argsort(flat, kind="stable")  # equal keys stay in row order
        return Chunk(texts, norms, keys, keyed, [None] * len(texts), hist, lens, flat[order], owner[order])


class Deduper:
    """Keeps the first copy; ``check`` says which kept text a new one duplicates, ``add`` keeps a text.

    ``dedup`` does both for a whole batch with the same result, signing the texts with numpy in chunks.
    ``shingle`` is the character n-gram length; ``bands`` and ``rows`` default to :func:`banding`.
    ``embed`` (e.g. an ``embeddings.Embedder``) adds semantic dedup at cosine similarity ``cosine``; it compares
    every text with every kept vector, so it suits thousands of texts rather than millions.
    ``lineage`` (any string, e.g. a seed id) exempts a text from near and semantic matches with kept texts
    of the same lineage; exact matches still count.
    """

    def __init__(
        self,
        threshold: float = 0.9,
        scorer: str = "ratio",
        *,
        exact: bool = True,
        near: bool = True,
        shingle: int = 4,
        bands: int | None = None,
        rows: int | None = None,
        embed: Embed | None = None,
        cosine: float = 0.95,
    ):
        if not 0 < threshold <= 1:
            raise ValueError("threshold must be in (0, 1]")
        if not 0 < cosine <= 1:
            raise ValueError("cosine must be in (0, 1]")
        if scorer not in SCORERS:
            raise ValueError(f"scorer must be one of {', '.join(SCORERS)}")
        self.threshold, self.cosine = threshold, cosine
        self.scorer = SCORERS[scorer]
        self._orderless = scorer in _ORDERLESS
        self._cutoff = round(threshold * 100, 9)  # 0.9 * 100 is 90.00000000000001
        self.exact, self.near, self.embed = exact, near, embed
        # the character-histogram bound (_histograms) holds for fuzz.ratio; other scorers see every candidate
        self._bound = near and scorer == "ratio"
        self._hist = np.empty((0, _BUCKETS), np.uint8)  # kept texts' histograms and lengths, grown by doubling
        self._lens = np.empty(0, np.int32)
        default_bands, default_rows = banding(threshold)
        self.lsh = MinHashLSH(shingle, bands or default_bands, rows or default_rows)
        self._ids: list[str] = []
        # normalised, as compared; an object array (grown by doubling) so a chunk's candidates are gathered by
        # np.take, several times faster than a list comprehension over their positions
        self._texts = np.empty(0, object)
        self._lineages = array("i")  # each kept text's lineage code (-1: none); 4 bytes a text
        self._codes: dict[str, int] = {}  # lineage -> code: an int per kept text instead of a string
        self._exact: dict[str, int] = {}
        # band key -> kept position(s): the newest texts' keys in a dict (a list only when shared), the rest in
        # two sorted numpy arrays, 12 bytes a key instead of ~80 in a dict: 24 keys a text made the dict most
        # of the index (about 2 KB a text); read with ``type(kept) is``, cheaper than isinstance in these loops
        self._fresh: dict[int, int | list[int]] = {}
        self._fresh_count = 0
        self._keys = np.empty(0, np.uint64)
        self._pos = np.empty(0, np.int32)
        # ``dedup``'s chunks' keys on their way to the arrays above (only while it runs): see _settle_chunk
        self._pend = np.empty(0, np.uint64)
        self._pend_pos = np.empty(0, np.int32)
        self._vectors = np.empty((0, 0), np.float32)  # kept embeddings, grown by doubling
        self._last: Prepared | None = None  # check() then add() of the same text prepares it once
        # a run's items look a text up before answering it (evol.evolve.evolver), maybe on other threads than the
        # settling that adds to the index (Prefect's chunk lanes): one lookup or addition at a time
        self._lock = threading.Lock()
        self._mark = 0  # how many texts ``check_settled`` sees (``begin_round``)

    def __len__(self) -> int:
        return len(self._ids)

    def check(self, text: str, lineage: str | None = None) -> Match | None:
        with self._lock:
            return self.check_item(self._one(text), lineage)

    def begin_round(self) -> None:
        """From now on ``check_settled`` sees the texts kept so far, and no later one."""
        with self._lock:
            self._mark = len(self._ids)

    def check_settled(self, text: str, lineage: str | None = None) -> Match | None:
        """``check`` against the texts kept when the round began (``begin_round``). A run's items look their text
        up before it is answered while the round settles in pool order: bounded so, whether an item is answered
        never depends on how far settling had got, and a resumed run pays for the same calls as one never
        stopped."""
        with self._lock:
            item = self._one(text)
            return self._check(item, -1 if lineage is None else self._codes.get(lineage, -1), self._mark)

    def add(self, id: str, text: str, lineage: str | None = None) -> None:
        with self._lock:
            self.add_item(id, self._one(text), lineage)

    def check_item(self, item: Prepared, lineage: str | None = None) -> Match | None:
        """``check`` of a text from :meth:`prepared`."""
        # a lineage nothing kept belongs to exempts nothing: no code is made for it
        return self._check(item, -1 if lineage is None else self._codes.get(lineage, -1))

    def add_item(self, id: str, item: Prepared, lineage: str | None = None) -> None:
        self._add(id, item, self._code(lineage))

    def extend(self, ids: Sequence[str], texts: Sequence[str], lineages: Sequence[str | None] | None = None) -> None:
        """Keep every text, unchecked (e.g. the seeds): signed a chunk at a time, not one numpy pass per text."""
        codes = self._codes_of(ids, texts, lineages)
        for id, item, code in zip(ids, self.prepared(texts), codes, strict=True):
            self._add(id, item, code)

    def dedup(
        self, ids: Sequence[str], texts: Sequence[str], lineages: Sequence[str | None] | None = None
    ) -> list[Match | None]:
        """Check each text in order and keep it when it duplicates nothing kept: one Match or None per text."""
        self._codes_of(ids, texts, lineages)
        return list(self.dedup_iter(ids, texts, lineages))

    def dedup_iter(
        self, ids: Iterable[str], texts: Iterable[str], lineages: Iterable[str | None] | None = None
    ) -> Iterator[Match | None]:
        """``dedup`` of texts as they come (a file's rows as they are read): a worker thread takes them a chunk at a
        time, so only the index holds them all. Uneven ids, texts and lineages raise ValueError when one runs out."""
        rows: Iterator[tuple[str, str, str | None]] = (
            zip(ids, texts, lineages, strict=True)
            if lineages is not None
            else ((id, text, None) for id, text in zip(ids, texts, strict=True))
        )
        return self.dedup_chunks(self._chunks(rows))

    def dedup_chunks(self, chunks: Iterable[Chunk]) -> Iterator[Match | None]:
        """``dedup_iter`` of chunks prepared already (by :attr:`preparer`, ids and lineages set), in order."""
        if self._fresh_count:  # the batches below find their own chunk's texts without the dict
            self._freeze()
        try:
            for chunk in chunks:
                yield from self._dedup_chunk(chunk)
        finally:
            self._merge_pending()

    def prepared(self, texts: Iterable[str]) -> Iterator[Prepared]:
        """The texts made ready for check_item and add_item, in order, signed a chunk at a time.

        A worker signs the next chunks while the caller checks the current one (numpy releases the GIL);
        a caller that has seen enough just stops iterating.
        """
        for chunk in self._chunks(("", text, None) for text in texts):
            yield from chunk.items

    def _chunks(self, rows: Iterator[tuple[str, str, str | None]]) -> Iterator[Chunk]:
        """``rows`` (id, text, lineage) prepared a chunk at a time, two chunks ahead, on one worker thread: it alone
        reads ``rows``, so a generator reading a file works there while this thread checks."""

        def take() -> Chunk | None:
            batch = list(islice(rows, CHUNK))
            if not batch:
                return None
            ids, texts, lineages = zip(*batch, strict=True)
            chunk = self._prepare(texts)
            chunk.ids, chunk.lineages = ids, lineages
            return chunk

        with ThreadPoolExecutor(1) as pool:
            ahead = deque(pool.submit(take) for _ in range(2))
            while (chunk := ahead.popleft().result()) is not None:
                ahead.append(pool.submit(take))
                yield chunk

    def _code(self, lineage: str | None) -> int:
        if lineage is None:
            return -1
        return self._codes.setdefault(lineage, len(self._codes))

    def _codes_of(self, ids: Sequence[str], texts: Sequence[str], lineages: Sequence[str | None] | None) -> list[int]:
        if len(ids) != len(texts) or (lineages is not None and len(lineages) != len(texts)):
            raise ValueError("ids, texts and lineages differ in length")
        return [-1] * len(texts) if lineages is None else [self._code(x) for x in lineages]

    def _one(self, text: str) -> Prepared:
        if self._last is None or self._last.text != text:
            self._last = self._prepare([text]).items[0]
        return self._last

    @property
    def preparer(self) -> Preparer:
        """How this index prepares texts (embeddings aside), to run elsewhere."""
        return Preparer(self.lsh, self.near, self._orderless, self._bound)

    def _prepare(self, texts: Sequence[str]) -> Chunk:
        chunk = self.preparer(texts)
        if self.embed is not None:
            chunk.vectors = self.embed(list(texts))
        return chunk

    def _dedup_chunk(self, chunk: Chunk) -> list[Match | None]:
        """``dedup`` of one prepared chunk: its near-duplicate candidates found, bounded and scored all at once
        (``_near_hits``), then each text in order against the few that reached the threshold."""
        norms, codes = chunk.norms, [self._code(x) for x in chunk.lineages]
        first = len(self._ids)
        exact = self._exact
        hits: dict[int, list[tuple[float, int]]] = {}
        if self.near:
            # a copy of a text kept before this chunk is an exact duplicate whatever its near matches are, and
            # is never kept: its candidates (a copy shares every band key with its original's) need no scoring
            known = np.fromiter((n in exact for n in norms), bool, len(norms)) if self.exact else None
            hits = self._near_hits(chunk, codes, first, known)
        kept_at: dict[int, int] = {}  # the chunk's kept texts: index in the chunk -> position in the index
        out: list[Match | None] = []
        ids, lineages = self._ids, self._lineages
        self._grow(first + len(norms))
        texts = self._texts
        for j, norm in enumerate(norms):
            match = self._exact_match(norm) if self.exact else None
            if match is None and j in hits:
                best: tuple[float, int] | None = None
                for score, ref in hits[j]:  # in keeping order, so a tie goes to the earliest kept text
                    pos = ref if ref < first else kept_at.get(ref - first)
                    if pos is not None and (best is None or score > best[0]):
                        best = (score, pos)
                if best is not None:
                    match = Match("near_duplicate", self._ids[best[1]], round(best[0] / 100, 4))
            vector = chunk.vectors[j]
            if match is None and vector is not None:
                match = self._semantic_match(vector, codes[j])
            if match is None:
                pos = kept_at[j] = len(ids)
                ids.append(chunk.ids[j])
                texts[pos] = norm
                lineages.append(codes[j])
                exact.setdefault(norm, pos)
                if vector is not None:
                    self._add_vector(pos, vector)
            out.append(match)
        rows = np.fromiter(kept_at, np.int64, count=len(kept_at))
        if self._bound:
            assert chunk.hist is not None
            self._hist[first : len(ids)], self._lens[first : len(ids)] = chunk.hist[rows], chunk.lens[rows]
        # the kept rows' keys, still sorted, each with its position in the index
        at = np.full(len(norms), -1, np.int32)
        at[rows] = np.arange(first, len(ids), dtype=np.int32)
        pos = at[chunk.key_rows]
        kept = pos >= 0
        self._settle_chunk(chunk.sorted_keys[kept], pos[kept])
        return out

    def _near_hits(
        self, chunk: Chunk, codes: list[int], first: int, skip: np.ndarray | None
    ) -> dict[int, list[tuple[float, int]]]:
        """For each text of the chunk, its candidates (texts sharing a band key, not of its lineage) that score at
        least the threshold: (score, ref) in ref order, ref a position in the index (below ``first``) or ``first``
        plus an earlier text's index in the chunk (a candidate only if that text is kept). Every candidate of the
        chunk is found, bounded and scored in a few numpy and rapidfuzz calls, not a Python loop each. The texts
        ``skip`` marks (None: none) are neither checked nor candidates."""
        keys, owner = chunk.sorted_keys, chunk.key_rows
        if skip is not None:
            live = ~skip[owner]
            keys, owner = keys[live], owner[live]
        if not keys.size:
            return {}
        code = np.array(codes, np.int64)
        who, ref = self._array_pairs(keys, owner)
        if who.size:
            lineages = np.frombuffer(self._lineages, np.int32)  # a view: released before anything is added
            mine = code[who]
            keep = (mine < 0) | (lineages[ref] != mine)
            del lineages
            who, ref = who[keep], ref[keep]
            if chunk.hist is not None:
                keep = _bounded(chunk.hist, chunk.lens, who, self._hist, self._lens, ref, self._cutoff)
                who, ref = who[keep], ref[keep]
        inner_who, inner = _inner_pairs(keys, owner)
        if inner_who.size:
            mine = code[inner_who]
            keep = (mine < 0) | (code[inner] != mine)
            inner_who, inner = inner_who[keep], inner[keep]
            if chunk.hist is not None:
                keep = _bounded(chunk.hist, chunk.lens, inner_who, chunk.hist, chunk.lens, inner, self._cutoff)
                inner_who, inner = inner_who[keep], inner[keep]
        # one pair per (text, candidate), sorted by text and then candidate: a text shares several keys with its
        # closest candidates. Candidates in the index and in the chunk are scored apart (never the same pair), the
        # former first, so each text's hits come in ref order
        norms = np.array(chunk.norms, object)
        hits = [
            self._scored(pairs, norms, pool, base)
            for pairs, pool, base in (
                (_distinct((who << 32) | ref), self._texts, 0),
                (_distinct((inner_who << 32) | inner), norms, first),
            )
        ]
        out: dict[int, list[tuple[float, int]]] = {}
        for texts, refs, scores in hits:
            for j, r, score in zip(texts.tolist(), refs.tolist(), scores.tolist(), strict=True):
                out.setdefault(j, []).append((score, r))
        return out

    def _scored(
        self, pairs: np.ndarray, norms: np.ndarray, pool: np.ndarray, base: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(text, base + candidate, score) of the ``pairs`` (text << 32 | candidate: ``norms[text]`` against
        ``pool[candidate]``) that score at least the threshold, in the order of ``pairs``."""
        who, ref = pairs >> 32, pairs & 0xFFFFFFFF
        if not pairs.size:
            return who, ref, np.empty(0)
        scores = process.cpdist(
            np.take(norms, who), np.take(pool, ref), scorer=self.scorer, score_cutoff=self._cutoff, dtype=np.float64
        )
        hit = np.flatnonzero(scores >= self._cutoff)
        return who[hit], ref[hit] + base, scores[hit]

    def _exact_match(self, norm: str, upto: int | None = None) -> Match | None:
        hit = self._exact.get(norm)  # the first position of the text: a later copy is later still
        if hit is not None and (upto is None or hit < upto):
            return Match("exact_duplicate", self._ids[hit], 1.0)
        return None

    def _semantic_match(self, vector: np.ndarray, lineage: int, upto: int | None = None) -> Match | None:
        n = len(self._ids) if upto is None else upto
        if not n:
            return None
        sims = self._vectors[:n] @ vector
        if lineage >= 0:
            sims[np.frombuffer(self._lineages, np.int32)[:n] == lineage] = -np.inf
        best_pos = int(np.argmax(sims))
        if sims[best_pos] >= self.cosine:
            return Match("semantic_duplicate", self._ids[best_pos], round(float(sims[best_pos]), 4))
        return None

    def _check(self, item: Prepared, lineage: int = -1, upto: int | None = None) -> Match | None:
        """The kept text ``item`` duplicates, among the first ``upto`` kept (all of them: None)."""
        if self.exact and (match := self._exact_match(item.norm, upto)) is not None:
            return match
        if self.near and item.keys:
            found: set[int] = set()
            for kept in map(self._fresh.get, item.keys):
                if kept is None:
                    continue
                if type(kept) is int:
                    found.add(kept)
                elif type(kept) is list:
                    found.update(kept)
            query = np.array(item.keys, np.uint64)
            for keys, positions in ((self._keys, self._pos), (self._pend, self._pend_pos)):
                if keys.size:
                    lo = np.searchsorted(keys, query, "left")
                    hi = np.searchsorted(keys, query, "right")
                    for a, b in zip(lo[hi > lo].tolist(), hi[hi > lo].tolist(), strict=True):
                        found.update(positions[a:b].tolist())
            if lineage >= 0:  # the text's own ancestors are no near-duplicates of it
                lineages = self._lineages
                found = {p for p in found if lineages[p] != lineage}
            if upto is not None:
                found = {p for p in found if p < upto}
            order = sorted(found)  # in keeping order, so a tie goes to the earliest kept text
            if item.hist is not None and len(order) > 1:
                at = np.array(order, np.int64)
                one = np.zeros(at.size, np.int64)
                lens = np.array([len(item.norm)], np.int64)
                order = at[_bounded(item.hist[None], lens, one, self._hist, self._lens, at, self._cutoff)].tolist()
            if order:
                best = process.extractOne(
                    item.norm, self._texts[order].tolist(), scorer=self.scorer, score_cutoff=self._cutoff
                )
                if best is not None:
                    return Match("near_duplicate", self._ids[order[best[2]]], round(best[1] / 100, 4))
        if item.vector is not None:
            return self._semantic_match(item.vector, lineage, upto)
        return None

    def _add(self, id: str, item: Prepared, lineage: int = -1) -> None:
        """Keep ``item``; its band keys go to the dict (``dedup`` keeps its chunks' texts itself, arrays at once)."""
        pos = len(self._ids)
        self._ids.append(id)
        self._grow(pos + 1)
        self._texts[pos] = item.norm
        self._lineages.append(lineage)
        self._exact.setdefault(item.norm, pos)
        if self._bound:
            # a text prepared elsewhere without a histogram is never ruled out by the bound
            self._hist[pos] = _FULL if item.hist is None else item.hist
            self._lens[pos] = len(item.norm)
        buckets = self._fresh
        for key in item.keys:
            kept = buckets.get(key)
            if kept is None:
                buckets[key] = pos
            elif type(kept) is int:
                buckets[key] = [kept, pos]
            elif type(kept) is list:
                kept.append(pos)
        self._fresh_count += len(item.keys)
        if self._fresh_count >= _FRESH_KEYS:
            self._freeze()
        if item.vector is not None:
            self._add_vector(pos, item.vector)

    def _grow(self, size: int) -> None:
        """Room for ``size`` kept texts (and their histograms and lengths, with the bound), grown by doubling."""
        if size > len(self._texts):
            n = len(self._texts)
            grown = max(1024, 2 * n, size)
            texts = np.empty(grown, object)
            texts[:n] = self._texts
            self._texts = texts
            if self._bound:
                hist, lens = np.zeros((grown, _BUCKETS), np.uint8), np.zeros(grown, np.int32)
                hist[:n], lens[:n] = self._hist, self._lens
                self._hist, self._lens = hist, lens

    def _add_vector(self, pos: int, vector: np.ndarray) -> None:
        if pos == len(self._vectors):
            grown = np.zeros((max(64, 2 * pos), vector.size), np.float32)
            if pos:
                grown[:pos] = self._vectors[:pos]
            self._vectors = grown
        self._vectors[pos] = vector

    def _array_pairs(self, query: np.ndarray, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(owner, kept position) for every kept position the sorted arrays (``_keys`` and ``_pend``) hold under each
        key of ``query`` (sorted): the searches walk the arrays forwards instead of jumping about them a text at a
        time."""
        owners, found = [], []
        for keys, positions in ((self._keys, self._pos), (self._pend, self._pend_pos)):
            if not keys.size:
                continue
            lo = np.searchsorted(keys, query, "left")
            # most keys are in no kept text: where each run ends is looked up only for those that are
            hit = keys[np.minimum(lo, keys.size - 1)] == query
            if not hit.any():
                continue
            starts = lo[hit]
            counts = np.searchsorted(keys, query[hit], "right") - starts
            # the positions under each hit key, one run after another: start + 0, 1, ... count - 1
            runs = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
            found.append(positions[runs].astype(np.int64))
            owners.append(np.repeat(owner[hit], counts))
        if not found:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        return np.concatenate(owners), np.concatenate(found)

    def _settle_chunk(self, keys: np.ndarray, pos: np.ndarray) -> None:
        """After a chunk of ``dedup``: the keys of its kept texts (sorted, with their positions) into ``_pend``, which
        joins the main arrays once it is a quarter of their size. Merging into the main arrays every
        ``_FRESH_KEYS`` keys copied them ever more often as they grew (a million texts: 17 million keys, 66
        copies), and reading a dict back a key at a time took seconds."""
        if keys.size:
            at = np.searchsorted(self._pend, keys, "right")
            self._pend, self._pend_pos = np.insert(self._pend, at, keys), np.insert(self._pend_pos, at, pos)
        self._fresh, self._fresh_count = {}, 0
        if self._pend.size >= max(_FRESH_KEYS, self._keys.size // 4):
            self._merge_pending()

    def _merge_pending(self) -> None:
        if self._pend.size:
            at = np.searchsorted(self._keys, self._pend, "right")
            self._keys, self._pos = np.insert(self._keys, at, self._pend), np.insert(self._pos, at, self._pend_pos)
            self._pend, self._pend_pos = np.empty(0, np.uint64), np.empty(0, np.int32)

    def _fresh_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The dict's keys and positions as two arrays sorted by key."""
        keys = np.empty(self._fresh_count, np.uint64)
        pos = np.empty(self._fresh_count, np.int32)
        i = 0
        for key, kept in self._fresh.items():
            if type(kept) is int:
                keys[i], pos[i] = key, kept
                i += 1
            elif type(kept) is list:
                keys[i : i + len(kept)], pos[i : i + len(kept)] = key, kept
                i += len(kept)
        order = np.argsort(keys, kind="stable")
        return keys[order], pos[order]

    def _freeze(self) -> None:
        """Merge the dict of fresh keys into the sorted arrays (amortised: every ``_FRESH_KEYS`` keys)."""
        self._merge_pending()
        keys, pos = self._fresh_arrays()
        at = np.searchsorted(self._keys, keys, "right")
        self._keys, self._pos = np.insert(self._keys, at, keys), np.insert(self._pos, at, pos)
        self._fresh, self._fresh_count = {}, 0

    # --- a snapshot for another process: what check_settled sees, read back into an index that decides the same

    def snapshot(self) -> bytes:
        """The texts ``check_settled`` sees (those kept when the round began) as bytes ``from_snapshot`` reads back
        into an index whose ``check_settled`` decides the same, for a process without the index (a Dask worker).
        The same texts give the same bytes whatever the index's layout. Embeddings are not in it: ValueError."""
        if self.embed is not None:
            raise ValueError("an index with embeddings has no snapshot")
        with self._lock:
            m = self._mark
            pairs = [(self._keys, self._pos), (self._pend, self._pend_pos), self._fresh_arrays()]
            keys = np.concatenate([k for k, _ in pairs])
            pos = np.concatenate([p for _, p in pairs]).astype(np.int32)
            below = pos < m
            keys, pos = keys[below], pos[below]
            order = np.lexsort((pos, keys))  # by key, then position: independent of dict, pending and main arrays
            # lineages renumbered in order of first use: one that no text below the mark has exempts nothing, as
            # an unknown one does, so it is left out
            lineages = np.frombuffer(self._lineages, np.int32)[:m]
            used, first = np.unique(lineages[lineages >= 0], return_index=True)
            used = used[np.argsort(first)]
            renumber = np.full(int(used.max()) + 2 if used.size else 1, -1, np.int32)
            renumber[used] = np.arange(used.size, dtype=np.int32)
            lineages = renumber[lineages]  # -1 stays -1: the last entry
            names = list(self._codes)  # in code order: a code is the count of codes before it
            codes = [names[c] for c in used.tolist()]
            head = {
                "threshold": self.threshold,
                "scorer": next(name for name, f in SCORERS.items() if f is self.scorer),
                "exact": self.exact,
                "near": self.near,
                "shingle": self.lsh.shingle,
                "bands": self.lsh.bands,
                "rows": self.lsh.rows,
                "cosine": self.cosine,
            }
            return pack(
                head,
                keys=keys[order],
                pos=pos[order],
                lineages=lineages,
                hist=self._hist[:m],
                lens=self._lens[:m],
                ids=self._ids[:m],
                texts=self._texts[:m].tolist(),  # as strings: the array holds Python objects
                codes=codes,
            )

    @classmethod
    def from_snapshot(cls, data: bytes) -> Deduper:
        """The index ``snapshot`` wrote, for ``check_settled`` (it sees every text in it); ValueError if ``data`` is
        no snapshot."""
        head, arrays, strings = unpack(data)
        index = cls(
            head["threshold"],
            head["scorer"],
            exact=head["exact"],
            near=head["near"],
            shingle=head["shingle"],
            bands=head["bands"],
            rows=head["rows"],
            cosine=head["cosine"],
        )
        index._ids, index._texts = strings["ids"], np.array(strings["texts"], object)
        index._lineages = array("i", arrays["lineages"].tobytes())
        index._codes = {name: code for code, name in enumerate(strings["codes"])}
        for pos, norm in enumerate(index._texts):
            index._exact.setdefault(norm, pos)
        if index._bound:
            index._hist, index._lens = arrays["hist"], arrays["lens"]
        index._keys, index._pos = arrays["keys"], arrays["pos"]
        index._mark = len(index._ids)
        return index


def dedup_texts(
    ids: Sequence[str], texts: Sequence[str], threshold: float = 0.9, scorer: str = "ratio", **options
) -> list[Match | None]:
    """One-shot dedup of a batch: for each text the kept text it duplicates, or None when it is kept."""
    return Deduper(threshold, scorer, **options).dedup(ids, texts)
