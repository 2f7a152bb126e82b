"""Choosing the best rows of an export by their scores: filters, quotas, and the best K, each too unlike the others.

``--select K`` walks the eligible rows from the best score down (ties broken by complexity, then by the later round,
then run and file order) and takes
each one that is not too similar to a row already taken, until K are taken. Similarity is dedup's own index
(evol.dedup.index.Deduper): rapidfuzz ratio over MinHash candidates, or cosine similarity of embeddings from an
OpenAI-compatible endpoint. Quotas cap a round's or an operation's rows; ``--balance`` gives each group an
equal share as far as its rows allow, then fills up from the rest.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from evol.dedup.index import Deduper, Prepared
from evol.errors import ConfigError
from evol.llm.embeddings import Embedder
from evol.quality.diversity import diversity
from evol.quality.scoring import ORDERS, Score, iter_scores, load_scores

if TYPE_CHECKING:
    from evol.output.rows import Row, Table
    from evol.rundir.reader import Run

log = logging.getLogger("evol")

GROUPS = ("round", "operation")

#: --max-similarity's default for each similarity; the two scales differ, so one number cannot serve both
#: (bench/similarity.py measured both: see "Choosing the best rows" in the README).
#: rapidfuzz ratio: 0.9 is dedup's own near-copy threshold, and a rewrite that only adds a sentence stays below it
RATIO_DEFAULT = 0.9
#: cosine of a sentence-embedding model (WordLlama, measured): above every distinct seed task's nearest other seed
#: (at most 0.764), below half the one-sentence rewrites; Deita's 0.9 is on a decoder's hidden states, where
#: every cosine runs high, and matching its rejected share would reject distinct tasks here
COSINE_DEFAULT = 0.8


@dataclass(frozen=True)
class Quota:
    """At most ``limit`` rows of one round or operation: a count, or a share of K when below 1."""

    field: str
    value: str
    limit: float

    def cap(self, k: int) -> int:
        return math.floor(self.limit * k) if self.limit < 1 else int(self.limit)

    def __str__(self) -> str:
        return f"{self.field}:{self.value}={self.limit:g}"


@dataclass(frozen=True)
class Choice:
    """How ``evol export`` chooses rows by their scores (``evol score``); the defaults choose nothing."""

    k: int | None = None
    by: str = "complexity*quality"
    min_complexity: float | None = None
    min_quality: float | None = None
    balance: str | None = None  # "round" or "operation"
    quotas: tuple[Quota, ...] = ()
    max_similarity: float | None = None  # None: the default of the similarity in use (RATIO_ or COSINE_DEFAULT)
    embeddings_url: str | None = None
    embeddings_model: str = "text-embedding-3-small"

    @property
    def threshold(self) -> float:
        """The similarity at or above which a row is skipped: --max-similarity, or the default for the similarity."""
        if self.max_similarity is not None:
            return self.max_similarity
        return COSINE_DEFAULT if self.embeddings_url else RATIO_DEFAULT

    @property
    def active(self) -> bool:
        return any(x is not None for x in (self.k, self.min_complexity, self.min_quality, self.balance)) or bool(
            self.quotas
        )

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.k is not None:
            out |= {
                "select": self.k,
                "by": self.by,
                "max_similarity": self.threshold,
                "max_similarity_from": "--max-similarity"
                if self.max_similarity is not None
                else f"the default for {'embeddings' if self.embeddings_url else 'rapidfuzz ratio'}",
                "similarity": f"cosine of {self.embeddings_model} embeddings"
                if self.embeddings_url
                else "rapidfuzz ratio",
            }
        for name in ("min_complexity", "min_quality", "balance"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.quotas:
            out["quotas"] = [str(q) for q in self.quotas]
        return out

    def check(self) -> None:
        if self.k is not None and self.k < 1:
            raise ConfigError(f"--select takes a number of rows of at least 1; got {self.k}.")
        if self.by not in ORDERS:
            raise ConfigError(f"--by takes one of {', '.join(ORDERS)}; got '{self.by}'.")
        if self.max_similarity is not None and not 0 < self.max_similarity <= 1:
            raise ConfigError(f"--max-similarity is a similarity above 0 and at most 1; got {self.max_similarity:g}.")
        if self.balance is not None and self.balance not in GROUPS:
            raise ConfigError(f"--balance takes round or operation; got '{self.balance}'.")
        if (self.balance is not None or self.quotas) and self.k is None:
            raise ConfigError(
                f"{'--balance' if self.balance else '--quota'} shares out the rows of --select K; add --select."
            )
        for name in ("min_complexity", "min_quality"):
            value = getattr(self, name)
            if value is not None and not 1 <= value <= 10:
                raise ConfigError(f"--{name.replace('_', '-')} is a score from 1 to 10; got {value:g}.")


def parse_quota(text: str) -> Quota:
    """``operation:deepen=2000`` or ``round:1=0.25`` (a share of --select K)."""
    try:
        key, limit = text.rsplit("=", 1)
        field, value = key.split(":", 1)
        number = float(limit)
    except ValueError:
        raise ConfigError(
            f"--quota takes FIELD:VALUE=N, e.g. operation:deepen=2000 or round:1=0.25; got '{text}'."
        ) from None
    if field not in GROUPS or not value or number < 0 or (number >= 1 and not number.is_integer()):
        raise ConfigError(
            f"--quota takes round:N=LIMIT or operation:NAME=LIMIT with a count or a share below 1; got '{text}'."
        )
    return Quota(field, value, number)


@dataclass
class Chosen:
    rows: list[Row]  # best first, with their scores (complexity, quality) when scored
    left_out: Counter  # reason -> rows
    summary: dict[str, Any]  # what export.json records


@dataclass
class _Scores:
    """Each table row's scores from its run's scores.jsonl, as columns: NaN where a score is None (or the row has
    no score row: ``has`` false); the few rows with a None keep their Score, for its Unclear outcome."""

    complexity: np.ndarray
    quality: np.ndarray
    has: np.ndarray
    odd: dict[int, Score]

    @classmethod
    def read(cls, table: Table) -> _Scores:
        n = len(table)
        out = cls(np.full(n, np.nan), np.full(n, np.nan), np.zeros(n, bool), {})
        source = {run.run_id: run.path for run in table.runs}  # scores by run id: of two runs with one id, the last
        for number, run in enumerate(table.runs):
            at: dict[str, int] = {}  # id -> the table row (its first; ``more`` holds the rest of a repeated id)
            more: dict[str, list[int]] = {}
            for i in np.flatnonzero(table.run == number).tolist():
                if at.setdefault(table.ids[i], i) != i:
                    more.setdefault(table.ids[i], []).append(i)
            for score in iter_scores(source[run.run_id]):  # a later row of an id wins, as in load_scores
                first = at.get(score.id)
                if first is None:
                    continue
                for j in (first, *more.get(score.id, ())):
                    out.complexity[j] = np.nan if score.complexity is None else score.complexity
                    out.quality[j] = np.nan if score.quality is None else score.quality
                    out.has[j] = True
                    if score.complexity is None or score.quality is None:
                        out.odd[j] = score
                    else:
                        out.odd.pop(j, None)
        return out

    def of(self, criterion: str) -> np.ndarray:
        return self.complexity if criterion == "complexity" else self.quality

    def value(self, by: str) -> np.ndarray:
        """Score.value for every row: NaN where it is None."""
        return self.complexity * self.quality if by == "complexity*quality" else self.of(by)

    def pair(self, i: int) -> tuple[float | None, float | None]:
        c, q = float(self.complexity[i]), float(self.quality[i])
        return (None if math.isnan(c) else c, None if math.isnan(q) else q)


def choose(table: Table, choice: Choice) -> Chosen:
    """The rows ``choice`` keeps: filtered by score, then (with K) the best K, diverse and within quotas."""
    choice.check()
    groups = {q.field for q in choice.quotas} | ({choice.balance} if choice.balance else set())
    for q in choice.quotas:
        known = set(_group_values(table, q.field, np.arange(len(table))))
        if q.value not in known:
            raise ConfigError(
                f"--quota {q}: no exported row has {q.field} {q.value}; they have {', '.join(sorted(known))}."
            )
    needed = [
        c
        for c, on in (
            ("complexity", choice.min_complexity is not None or (choice.k and "complexity" in choice.by)),
            ("quality", choice.min_quality is not None or (choice.k and "quality" in choice.by)),
        )
        if on
    ]
    scores = _Scores.read(table)
    _require(table, scores, needed)
    left_out, eligible = _filtered(table, scores, choice, needed)
    if not eligible.size:
        raise ConfigError(
            f"No row passes the score filters ({', '.join(f'{n} {w}' for w, n in left_out.most_common())}); loosen them."
        )
    walk: dict[str, Any] = {}
    if choice.k is None:
        picked = eligible
    else:
        # with K every eligible row has the score it is ranked by (_filtered left out the rows without it)
        value = scores.value(choice.by)
        valued = eligible[scores.has[eligible] & ~np.isnan(value[eligible])]
        ranked = valued[rank_order(value[valued], np.nan_to_num(scores.complexity[valued]), table.round[valued])]
        at, walk = _walk(ranked, table, choice)
        picked = ranked[at]
        left_out["not among the best --select rows"] += eligible.size - picked.size
    summary = {
        "eligible": int(eligible.size),
        "taken": int(picked.size),
        **walk,
        "scores": {"eligible": _stats(scores, eligible), "selected": _stats(scores, picked)},
    }
    if choice.k is not None:
        summary["requested"] = choice.k
        summary["diversity"] = {
            "selected": diversity(list(table.instructions(picked.tolist()))),
            "best_by_score_alone": diversity(list(table.instructions(ranked[: picked.size].tolist()))),
        }
        if picked.size < choice.k:
            log.warning("export: --select %d took %d rows: %s", choice.k, picked.size, walk.get("stopped"))
    if groups:
        summary["groups"] = {g: dict(sorted(Counter(_group_values(table, g, picked)).items())) for g in sorted(groups)}
    rows = [
        dataclasses.replace(row, complexity=c, quality=q) if scores.has[i] else row
        for i, row in zip(picked.tolist(), table.rows(picked.tolist()), strict=True)
        for c, q in [scores.pair(i)]
    ]
    return Chosen(rows, left_out, summary)


def rank_order(value: np.ndarray, complexity: np.ndarray, rounds: np.ndarray) -> np.ndarray:
    """Best first: the score ranked by, then the more complex (an unknown complexity as 0), then the later round.
    Integer scores tie often, and the rows come in round order, so a plain stable sort would hand every tie to the
    least-evolved row; what is still tied after this keeps run and file order (the sort is stable)."""
    return np.lexsort((-rounds, -complexity, -value))


def with_scores(rows: list[Row], runs: list[Run]) -> list[Row]:
    """The rows with their scores from each run's scores.jsonl (unchanged when a run was never scored)."""
    by_run = {run.run_id: load_scores(run.path) for run in runs}
    return [_scored(row, by_run[row.run_id].get(row.id)) for row in rows] if any(by_run.values()) else rows


def _scored(row: Row, s: Score | None) -> Row:
    return dataclasses.replace(row, complexity=s.complexity, quality=s.quality) if s is not None else row


def _group_values(table: Table, field: str, at: np.ndarray) -> list[str]:
    """Each row's round or operation, as --quota and --balance name it."""
    if field == "round":
        return [str(r) for r in table.round[at].tolist()]
    return [table.operations[o] for o in table.operation[at].tolist()]


def _require(table: Table, scores: _Scores, needed: list[str]) -> None:
    """One sentence naming the runs to score, when a needed score was never asked for."""
    for criterion in needed:
        lacking = ~scores.has | np.isnan(scores.of(criterion))
        for i, s in scores.odd.items():  # a None score that was asked for and came back unclear is not missing
            if criterion in s.unclear:
                lacking[i] = False
        if lacking.any():
            ids = {table.runs[n].run_id for n in np.unique(table.run[lacking]).tolist()}
            paths = sorted({str(run.path) for run in table.runs if run.run_id in ids})
            raise ConfigError(
                f"{int(lacking.sum())} of {len(table)} rows have no {criterion} score; run "
                f"'python -m evol score {' '.join(paths)}' first."
            )


def _filtered(table: Table, scores: _Scores, choice: Choice, needed: list[str]) -> tuple[Counter, np.ndarray]:
    """(reason -> rows left out by the score filters, in the order the rows first give each reason; the positions
    of the rows that pass). A row without scores needs none: _require stopped the export otherwise."""
    reason = np.zeros(len(table), np.int64)  # 0: passes; else an index in ``why`` plus one
    why: list[str] = []

    def code(text: str) -> int:
        if text not in why:
            why.append(text)
        return why.index(text) + 1

    for i, s in sorted(scores.odd.items()):
        for criterion in needed:
            if getattr(s, criterion) is None:
                reason[i] = code(f"{criterion} unclear ({s.unclear[criterion].outcome})")
                break
    # a score behind a --min-* is needed, so it is there (the loop above left out the rows without it); NaN < x
    # is false, as None is skipped
    for name, bound, text in (
        ("complexity", choice.min_complexity, "complexity below --min-complexity"),
        ("quality", choice.min_quality, "quality below --min-quality"),
    ):
        if bound is not None:
            below = (reason == 0) & scores.has & (scores.of(name) < bound)
            if below.any():
                reason[below] = code(text)
    left_out: Counter = Counter()
    firsts = sorted((int(np.argmax(reason == c)), c) for c in range(1, len(why) + 1))
    for _, c in firsts:
        left_out[why[c - 1]] = int((reason == c).sum())
    return left_out, np.flatnonzero(reason == 0)


def _walk(ranked: np.ndarray, table: Table, choice: Choice) -> tuple[np.ndarray, dict[str, Any]]:
    """Take rows best first, each unless too similar to one taken or over its group's cap, until K are taken:
    the positions in ``ranked`` of those taken, in order.

    Without --balance one pass does it. With it each pass shares what is still missing equally among the groups
    that still have rows (as far as their quotas allow); a pass that takes nothing ends the walk.
    """
    k = choice.k
    assert k is not None
    if choice.embeddings_url:
        from evol.config import api_key_from_env

        key = api_key_from_env()
        embed = Embedder(
            choice.embeddings_url, choice.embeddings_model, api_key=key.get_secret_value() if key else None
        )
        deduper = Deduper(1.0, exact=True, near=False, embed=embed, cosine=choice.threshold)
    else:
        # dedup's own index and banding: on bench.select's 250k rows an exhaustive audit finds no chosen pair
        # above the threshold; on short templated texts (15 words) it can miss a pair just above it
        deduper = Deduper(choice.threshold, "ratio")
    if not choice.quotas and not choice.balance and deduper.embed is None:
        return _walk_plain(ranked, table, k, deduper)
    hard = {(q.field, q.value): q.cap(k) for q in choice.quotas}
    taken: list[int] = []
    count: Counter = Counter()  # (field, value) -> rows taken
    similar = 0
    remaining = list(range(len(ranked)))
    ready: dict[int, Prepared] = {}
    fields = sorted({f for f, _ in hard} | ({choice.balance} if choice.balance else set()))
    values = {f: _group_values(table, f, ranked) for f in fields}

    def groups_of(i: int) -> list[tuple[str, str]]:
        return [(f, values[f][i]) for f in fields]

    while len(taken) < k and remaining:
        caps = dict(hard)
        if choice.balance:
            caps.update(_shares(remaining, groups_of, choice.balance, k - len(taken), count, hard))
        before, left = len(taken), []
        fresh = deduper.prepared(table.instructions(ranked[[i for i in remaining if i not in ready]].tolist()))
        walking = iter(remaining)
        for i in walking:
            item = ready.pop(i, None) or next(fresh)
            gs = groups_of(i)
            if any(count[g] >= caps.get(g, k) for g in gs):
                left.append(i)  # over its group's cap in this pass; a later pass may have room
                if deduper.embed is not None:
                    ready[i] = item  # embedded already: the next pass must not pay for it again
                continue
            if deduper.check_item(item) is not None:
                similar += 1
                continue
            deduper.add_item(str(i), item)
            taken.append(i)
            count.update(gs)
            if len(taken) == k:
                break
        remaining = left + list(walking)
        if not choice.balance or len(taken) == before:
            break
    return np.array(sorted(taken), np.int64), _walked(similar, len(taken) < k, bool(remaining))


def _walk_plain(ranked: np.ndarray, table: Table, k: int, deduper: Deduper) -> tuple[np.ndarray, dict[str, Any]]:
    """The walk without quotas or embeddings: dedup's own batch of the ranked texts, stopped at the K-th kept.
    Each row is checked against the rows taken before it, as one check and add a row would (and the same
    candidates, bound and threshold decide), but a chunk of rows at a time (Deduper.dedup_iter)."""
    taken: list[int] = []
    similar = 0
    texts = table.instructions(ranked.tolist())
    for i, match in enumerate(deduper.dedup_iter(map(str, range(len(ranked))), texts)):
        if match is not None:
            similar += 1
            continue
        taken.append(i)
        if len(taken) == k:
            break
    return np.array(taken, np.int64), _walked(similar, len(taken) < k, False)


def _walked(similar: int, short: bool, remaining: bool) -> dict[str, Any]:
    stopped = None
    if short:
        stopped = (
            "the quotas leave no room for more"
            if remaining
            else "no other eligible row is unlike enough the rows taken (--max-similarity)"
        )
    return {"skipped_as_similar": similar, **({"stopped": stopped} if stopped else {})}


def _shares(remaining: list[int], groups_of, field: str, need: int, count: Counter, hard: dict) -> dict:
    """Equal shares of ``need`` more rows among the balanced field's groups, none beyond what it has (or its quota)."""
    have = Counter(g for i in remaining for g in groups_of(i) if g[0] == field)
    room = {g: min(n, hard.get(g, n + count[g]) - count[g]) for g, n in sorted(have.items())}
    extra = dict.fromkeys(room, 0)
    open_groups = [g for g in room if room[g] > 0]
    while need > 0 and open_groups:
        share = max(1, need // len(open_groups))
        for g in list(open_groups):
            add = min(share, room[g] - extra[g], need)
            extra[g] += add
            need -= add
            if extra[g] == room[g]:
                open_groups.remove(g)
            if need == 0:
                break
    return {g: count[g] + extra[g] for g in room}


def _stats(scores: _Scores, at: np.ndarray) -> dict[str, Any]:
    out = {}
    for criterion in ("complexity", "quality"):
        values = scores.of(criterion)[at[scores.has[at]]]
        values = values[~np.isnan(values)]
        if values.size:
            out[criterion] = {
                "n": int(values.size),
                "mean": round(float(values.mean()), 3),
                "median": float(np.median(values)),
                "min": float(values.min()),
                "max": float(values.max()),
            }
    return out
