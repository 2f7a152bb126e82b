"""Exact and near-duplicate detection, incremental: each new text is checked against everything kept so far."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from rapidfuzz import fuzz, process

from .filters import normalize

SCORERS = {
    "ratio": fuzz.ratio,
    "token_set_ratio": fuzz.token_set_ratio,
    "token_sort_ratio": fuzz.token_sort_ratio,
    "partial_ratio": fuzz.partial_ratio,
    "WRatio": fuzz.WRatio,
}


@dataclass(frozen=True)
class Match:
    rule: str  # "exact_duplicate" or "near_duplicate"
    duplicate_of: str
    score: float  # 0..1


class Deduper:
    """Keeps the first copy; ``check`` says which kept text a new one duplicates, ``add`` keeps a text."""

    def __init__(self, threshold: float = 0.9, scorer: str = "ratio", *, exact: bool = True, near: bool = True):
        if not 0 < threshold <= 1:
            raise ValueError("threshold must be in (0, 1]")
        self.threshold = threshold
        self.scorer = SCORERS[scorer]
        self.exact, self.near = exact, near
        self._hashes: dict[bytes, str] = {}
        self._ids: list[str] = []
        self._texts: list[str] = []

    def __len__(self) -> int:
        return len(self._ids)

    def check(self, text: str) -> Match | None:
        norm = normalize(text)
        if self.exact:
            hit = self._hashes.get(_digest(norm))
            if hit is not None:
                return Match("exact_duplicate", hit, 1.0)
        if self.near and self._texts:
            best = process.extractOne(norm, self._texts, scorer=self.scorer, score_cutoff=self.threshold * 100)
            if best is not None:
                return Match("near_duplicate", self._ids[best[2]], round(best[1] / 100, 4))
        return None

    def add(self, id: str, text: str) -> None:
        norm = normalize(text)
        self._hashes.setdefault(_digest(norm), id)
        self._ids.append(id)
        self._texts.append(norm)


def _digest(norm: str) -> bytes:
    return hashlib.blake2b(norm.encode("utf-8"), digest_size=16).digest()
