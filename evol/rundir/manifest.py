"""A run's manifest.json as a type: what ``evol.evolve.run.build_manifest`` writes and every reader reads back.

Readers get it through ``load_manifest`` only. Every block has defaults and unknown keys are ignored, so a
manifest of an older evol (fewer keys) or a newer one (more keys) still loads; only ``counts`` is required,
as it always was. The dump keeps today's bytes: the same keys in the same order, the optional blocks absent
rather than null.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from evol.errors import InputError
from evol.rundir.files import write_json
from evol.rundir.folder import MANIFEST


class Block(BaseModel):
    """A block of the manifest: frozen, and tolerant of keys it does not know."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    def given(self, name: str, default: object = "?") -> object:
        """A field as the manifest wrote it, or ``default`` when the manifest (an older one) has no such key."""
        return getattr(self, name) if name in self.model_fields_set else default


class Counts(Block):
    """What became of the seeds and their evolutions; ``balanced``: every attempt has exactly one outcome."""

    seeds: int = 0
    seeds_skipped: int = 0
    rounds_done: int = 0
    attempts: int = 0
    kept: int = 0
    eliminated: int = 0
    duplicate: int = 0
    failed: int = 0
    seed_records: int = 0
    seed_rejections: int = 0
    dataset_rows: int = 0
    seeds_with_kept_descendants: int = 0
    seeds_without_kept_descendants: int = 0
    # evolutions whose judge's first answer read as no verdict, resolved by the retry or not
    judge_unclear: int = 0
    balanced: bool = True


class RoundCounts(Block):
    attempts: int = 0
    kept: int = 0
    eliminated: int = 0
    duplicate: int = 0
    failed: int = 0


class Backend(Block):
    identity: str = ""
    evolve_model: str | None = None
    response_model: str | None = None
    judge_model: str | None = None
    response_models: list[str] | None = None  # only with several responders; absent otherwise

    def self_judged(self) -> tuple[str, ...]:
        """What the judge model also wrote ("evolutions", "answers"): an LLM judge prefers its own output
        (self-preference bias), so its verdicts and scores on that work are not independent."""
        judge = self.judge_model
        if not judge:
            return ()
        wrote: tuple[str, ...] = ("evolutions",) if judge == self.evolve_model else ()
        if judge == self.response_model or judge in (self.response_models or ()):
            wrote += ("answers",)
        return wrote


def self_judged_note(judge: str, wrote: tuple[str, ...]) -> str:
    """One sentence for the summary, the report and ``evol score``: the judge judged its own work."""
    return (
        f"the judge {judge} also wrote the {' and the '.join(wrote)}: it judges its own work, which LLM judges "
        "favour (self-preference); pass --judge-model with another model to judge independently"
    )


class AnswerSettings(Block):
    """How the answers were made (several candidates or answer evolution); absent for one plain answer."""

    candidates: int
    evolve_answers: int
    ranking: str


class ProfileInfo(Block):
    name: str = ""
    operations: dict[str, float] = Field(default_factory=dict)  # operation -> weight


class JudgeBooks(Block):
    judged: int = 0
    unclear: int = 0
    resolved_by_retry: int = 0
    unclear_after_retry: int = 0


class Tokens(Block):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class UsageBooks(Block):
    """Calls and tokens by stage and model (``Tally.as_dict``)."""

    calls: dict[str, int] = Field(default_factory=dict)
    calls_from_cache: dict[str, int] = Field(default_factory=dict)
    calls_failed: dict[str, int] = Field(default_factory=dict)
    # answer calls not made: the evolution duplicated a kept text before it was answered
    calls_saved: dict[str, int] = Field(default_factory=dict)
    tokens_by_stage: dict[str, Tokens] = Field(default_factory=dict)
    tokens_by_model: dict[str, Tokens] = Field(default_factory=dict)
    tokens_by_stage_model: dict[str, dict[str, Tokens]] = Field(default_factory=dict)
    tokens_total: Tokens = Tokens()


class CostBooks(Block):
    """The money (``Tally.cost_books``): total, budget, models without a price, cost per stage."""

    total: float = 0.0
    budget: float | None = None
    unpriced_models: list[str] = Field(default_factory=list)
    by_stage: dict[str, float] = Field(default_factory=dict)


class CacheCount(Block):
    hits: int = 0
    misses: int = 0


class ConcurrencyBooks(Block):
    """``--concurrency auto``: its bounds, where the limit ended, the 429/503 answers it met, and its trace
    (``[seconds since the start, limit, why]`` at every change; ``AdaptiveLimit.books``)."""

    mode: str = "auto"
    maximum: int = 0
    final: int = 0
    peak: int = 0
    answers: int = 0
    congested: int = 0
    trace: list[tuple[float, int, str]] = Field(default_factory=list)


class Span(Block):
    """An estimated figure: what is expected, and the range it should fall in."""

    low: float = 0.0
    expected: float = 0.0
    high: float = 0.0


class StageEstimate(Block):
    calls: Span = Span()
    prompt_tokens: Span = Span()
    completion_tokens: Span = Span()
    cost_usd: Span = Span()


class Estimate(Block):
    """What a run was expected to cost before its first call (``evol.evolve.estimate``): calls, tokens, dollars
    and wall time, in total, per stage and per round, with what the rates came from."""

    source: str = ""
    rounds: list[int] = Field(default_factory=list)  # the rounds estimated (a resumed run: those left)
    calls: Span = Span()
    tokens: Span = Span()
    cost_usd: Span = Span()
    seconds: Span = Span()
    by_stage: dict[str, StageEstimate] = Field(default_factory=dict)
    calls_by_round: dict[str, dict[str, float]] = Field(default_factory=dict)  # expected calls, round -> stage
    unpriced_models: list[str] = Field(default_factory=list)


class Chunks(Block):
    """Chunk tasks of a Prefect run: in the manifest the flow returns, not in the file (written before)."""

    run: int = 0
    restored: int = 0


class RunSettings(Block):
    """The few settings of the manifest's ``config`` its readers use (seed file, profile), typed."""

    profile: str = ""
    seeds: str | None = None
    instruction_field: str | None = None
    input_field: str | None = None
    limit: int | None = None
    max_instruction_chars: int | None = None
    prompts_dir: str | None = None


class Manifest(Block):
    """manifest.json: how a run went and what made it."""

    out: str = ""
    status: str = ""
    reason: str = ""
    run_id: str = ""
    started: str = ""  # UTC, ISO 8601
    seconds: float = 0.0
    # the RunConfig without secrets, kept as written: its keys follow the evol version that wrote it
    config: dict[str, Any] = Field(default_factory=dict)
    backend: Backend = Backend()
    answers: AnswerSettings | None = None
    seed_files: list[str] = Field(default_factory=list)
    profile: ProfileInfo = ProfileInfo()
    prompt_sha256: dict[str, str] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    counts: Counts
    by_round: dict[str, RoundCounts] = Field(default_factory=dict)
    by_rule: dict[str, int] = Field(default_factory=dict)
    rules: dict[str, bool] = Field(default_factory=dict)  # every rule of the registry: on or off
    # attempts and the outcome kinds that occurred, in the order they first did
    by_operation: dict[str, dict[str, int]] = Field(default_factory=dict)
    judge: JudgeBooks = JudgeBooks()
    usage: UsageBooks = UsageBooks()
    cost_usd: CostBooks = CostBooks()
    cache: CacheCount = CacheCount()
    concurrency: ConcurrencyBooks | None = None
    estimate: Estimate | None = None
    chunks: Chunks | None = None

    @property
    def settings(self) -> RunSettings:
        """The typed view of ``config`` (what is missing or of another shape there reads as unset)."""
        known = {k: v for k, v in self.config.items() if k in RunSettings.model_fields}
        try:
            return RunSettings.model_validate(known)
        except ValidationError:
            return RunSettings.model_validate({k: v for k, v in known.items() if _valid(k, v)})

    def dump(self) -> dict[str, Any]:
        """The JSON data of manifest.json: the optional blocks left out while unset."""
        absent: dict[str, Any] = {
            k: True for k in ("answers", "concurrency", "estimate", "chunks") if getattr(self, k) is None
        }
        if self.backend.response_models is None:
            absent["backend"] = {"response_models": True}
        return self.model_dump(mode="json", exclude=absent)


def _valid(key: str, value: Any) -> bool:
    try:
        RunSettings.model_validate({key: value})
    except ValidationError:
        return False
    return True


def write_manifest(folder: Path, manifest: Manifest) -> None:
    """manifest.json, atomically (``evol.rundir.files.write_json``)."""
    write_json(folder / MANIFEST, manifest.dump())


def load_manifest(path: Path) -> Manifest:
    """A run's manifest.json (the file, or the run folder holding it); InputError in one sentence if it is
    missing, not JSON, or not a run's manifest."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST
    if not path.is_file():
        raise InputError(f"{path.parent} has no {MANIFEST}; is it a run folder of 'python -m evol run'?")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON ({exc}).") from None
    if not isinstance(data, dict) or "counts" not in data:
        raise InputError(f"{path} is not a run manifest (it has no counts).")
    try:  # a block written as null reads as absent, as the readers' ``.get(key) or {}`` took it
        return Manifest.model_validate({k: v for k, v in data.items() if v is not None})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise InputError(f"{path} is not a run manifest ({where}: {err['msg']}).") from None
