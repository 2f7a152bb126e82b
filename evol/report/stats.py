"""What the report shows, gathered from a run directory: per-round texts and their lexical statistics, the seed
baseline, and how in-depth evolutions fared by the length of the instruction they grew from."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from pydantic import Field

from evol.errors import EvolError
from evol.models import Frozen, Record, Rejection, user_turns
from evol.quality.scoring import Score
from evol.rundir.reader import Run
from evol.text import whitespace_word_count

OUTCOMES = ("kept", "eliminated", "duplicate", "failed")


def pct(n: float, d: float) -> str:
    return f"{100 * n / d:.0f}%" if d else "–"


_TOKEN = re.compile(r"\w+(?:'\w+)?")
# politeness and auxiliaries before the real verb: "Could you please explain ..." opens with "explain"
_LEAD = frozenset(
    [
        "please",
        "kindly",
        "can",
        "could",
        "would",
        "will",
        "you",
        "i",
        "we",
        "now",
        "also",
        "then",
        "so",
        "and",
        "hey",
        "hi",
        "ok",
        "okay",
        "let's",
        "let",
        "us",
        "me",
        "help",
        "assist",
    ]
)
# what sits between the verb and its object: "Write a short poem" has the object "short" by this rule, which is
# crude but stable, and the share of distinct openings is what the plot compares, not the words themselves
_BETWEEN = frozenset(
    [
        "a",
        "an",
        "the",
        "me",
        "us",
        "my",
        "our",
        "your",
        "his",
        "her",
        "their",
        "its",
        "this",
        "that",
        "these",
        "those",
        "some",
        "any",
        "one",
        "two",
        "three",
        "few",
        "several",
        "of",
        "to",
        "for",
        "in",
        "on",
        "with",
        "about",
        "into",
        "from",
        "by",
        "as",
        "all",
        "each",
        "every",
        "is",
        "are",
        "was",
        "were",
        "be",
        "do",
        "does",
        "did",
        "what",
        "how",
        "which",
    ]
)


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.casefold())


def opening(text: str) -> tuple[str | None, str | None]:
    """(first verb, first object word) by position, a dependency-free stand-in for the paper's verb-noun parse."""
    return _opening(tokens(text[:400]))


def _opening(ws: list[str]) -> tuple[str | None, str | None]:
    i = 0
    while i < len(ws) and ws[i] in _LEAD:
        i += 1
    verb = ws[i] if i < len(ws) else None
    j = i + 1
    while j < len(ws) and ws[j] in _BETWEEN:
        j += 1
    return verb, (ws[j] if j < len(ws) else None)


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct n-grams over all n-grams of the texts (Li et al. 2016); 0 when there are none."""
    return _distinct([tokens(t) for t in texts], n)


def _distinct(token_lists: list[list[str]], n: int) -> float:
    seen: set[object] = set()
    total = 0
    for t in token_lists:
        grams = t if n == 1 else list(zip(*(t[i:] for i in range(n)), strict=False))
        seen.update(grams)
        total += len(grams)
    return len(seen) / total if total else 0.0


@dataclass
class RoundStats:
    """What one round (0 = the seeds) contributes to the plots."""

    round: int
    instructions: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)  # complexity (evol score)
    quality: list[float] = field(default_factory=list)
    turns: list[int] = field(default_factory=list)  # user turns of each kept conversation (1: a single instruction)

    @property
    def label(self) -> str:
        return "seeds" if self.round == 0 else f"round {self.round}"

    @cached_property
    def words(self) -> list[int]:
        return [whitespace_word_count(t) for t in self.instructions]

    @cached_property
    def output_words(self) -> list[int]:
        return [whitespace_word_count(t) for t in self.outputs]

    @cached_property
    def _openings(self) -> list[tuple[str | None, str | None]]:
        return [opening(t) for t in self.instructions]

    @cached_property
    def _diversity(self) -> dict[str, float]:
        n = len(self.instructions)
        token_lists = [tokens(t) for t in self.instructions]  # once per round: the costly part on big runs
        opens = self._openings

        def share(xs: list) -> float:
            return len({x for x in xs if x}) / n if n else 0.0

        return {
            "distinct-1": _distinct(token_lists, 1),
            "distinct-2": _distinct(token_lists, 2),
            "unique first verbs": share([v for v, _ in opens]),
            "unique first nouns": share([o for _, o in opens]),
            "unique verb-noun pairs": share([(v, o) if v and o else None for v, o in opens]),
        }

    def diversity(self) -> dict[str, float]:
        """Computed once, after the round's instructions are all in."""
        return self._diversity

    def top_openings(self, k: int = 5) -> list[tuple[str, int]]:
        return Counter(v for v, _ in self._openings if v).most_common(k)


def run_seeds(run: Run) -> list[tuple[str, str]]:
    """(id, instruction) of the run's seeds, re-read from its seed file; empty when that file moved or changed."""
    from evol.seeds import load_seeds

    cfg = run.manifest.settings
    if cfg.seeds is None:
        return []
    try:
        seedset = load_seeds(
            cfg.seeds,
            instruction_field=cfg.instruction_field,
            input_field=cfg.input_field,
            limit=cfg.limit,
            max_chars=cfg.max_instruction_chars,
        )
    except (EvolError, OSError, TypeError, ValueError):
        return []
    seeds = [(s.id, s.instruction) for s in seedset.seeds]
    used = {r.seed_id for r in [*run.records, *run.rejected] if r.round > 0}
    if len(seeds) != run.counts.seeds or not used <= {sid for sid, _ in seeds}:
        return []  # not the file this run read any more: no baseline beats a wrong one
    return seeds


def round_stats(run: Run, seeds: list[tuple[str, str]], scores: dict[str, Score]) -> list[RoundStats]:
    rounds: dict[int, RoundStats] = {}
    seed_records = [r for r in run.records if r.round == 0]
    if seeds or seed_records:
        r0 = rounds[0] = RoundStats(0)
        r0.instructions = [text for _, text in seeds] or [r.instruction for r in seed_records]
        r0.outputs = [r.output for r in seed_records]
        r0.turns = [user_turns(r.history) + 1 for r in seed_records]
        _add_scores(r0, [sid for sid, _ in seeds] or [r.id for r in seed_records], scores)
    for rec in run.records:
        if rec.round == 0:
            continue
        st = rounds.setdefault(rec.round, RoundStats(rec.round))
        st.instructions.append(rec.instruction)
        st.outputs.append(rec.output)
        st.turns.append(user_turns(rec.history) + 1)
        _add_scores(st, [rec.id], scores)
    return [rounds[k] for k in sorted(rounds)]


def _add_scores(st: RoundStats, ids: list[str], scores: dict[str, Score]) -> None:
    for s in filter(None, map(scores.get, ids)):
        if s.complexity is not None:
            st.scores.append(s.complexity)
        if s.quality is not None:
            st.quality.append(s.quality)


# --------------------------------------------------------------------------- in-depth evolutions by parent length

#: (label, lowest parent length in characters): the issue's concern is the long parent, where a rewrite that adds
#: 10-20 words stays within dedup's ratio of it
LENGTH_BUCKETS = (("< 450", 0), ("450–999", 450), ("≥ 1000", 1000))


class LengthBucket(Frozen):
    """In-depth candidates whose parent instruction is of one length band, and what became of them."""

    label: str
    low: int  # the shortest parent length in the band, in characters
    candidates: int = 0
    kept: int = 0
    rules: dict[str, int] = Field(default_factory=dict)  # rejections by rule


def in_depth_operations(run: Run) -> set[str]:
    """The run's in-depth operations, from its profile; empty when the profile cannot be read any more."""
    from evol.prompts import load_profile

    prompts_dir = run.manifest.settings.prompts_dir
    try:
        profile = load_profile(run.profile, Path(prompts_dir) if prompts_dir else None)
    except (EvolError, OSError, ValueError):
        return set()
    return {op.name for op in profile.operations if op.kind == "in-depth"}


def depth_by_parent_length(run: Run, seeds: list[tuple[str, str]]) -> list[LengthBucket]:
    """Kept share of in-depth evolutions by their parent's length (parents found through parent_id among the
    seeds and kept records); candidates whose parent text is unknown are left out."""
    either: list[Rejection | Record] = [*run.rejected, *run.records]
    texts = dict(seeds) | {r.id: r.instruction for r in either if r.round == 0 and r.instruction}
    texts |= {r.id: r.instruction for r in run.records}
    ops = in_depth_operations(run)
    tally = {label: _Tally() for label, _ in LENGTH_BUCKETS}
    kept = {r.id for r in run.records}
    for r in [*run.records, *run.rejected]:
        parent = texts.get(r.parent_id) if r.parent_id is not None else None
        if r.round == 0 or r.operation not in ops or parent is None:
            continue
        label = next(lb for lb, low in reversed(LENGTH_BUCKETS) if len(parent) >= low)
        t = tally[label]
        t.candidates += 1
        if r.id in kept:
            t.kept += 1
        elif isinstance(r, Rejection):  # a kept record's id is always in ``kept``
            t.rules[r.rule] += 1
    return [
        LengthBucket(
            label=lb, low=low, candidates=tally[lb].candidates, kept=tally[lb].kept, rules=dict(tally[lb].rules)
        )
        for lb, low in LENGTH_BUCKETS
    ]


@dataclass
class _Tally:
    """A length band's counts while they are added up."""

    candidates: int = 0
    kept: int = 0
    rules: Counter[str] = field(default_factory=Counter)
