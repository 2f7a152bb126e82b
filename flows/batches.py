"""One batch of pool entries through one round, with no Prefect in sight: what a batch task runs anywhere.

A batch builds its own client (the key from its own environment, never from a parameter) and its own
``CachedChat`` on the run directory's ``calls.sqlite``, so it runs the same in a thread of the flow's
process or in a Dask worker on another machine that sees the run directory.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, SecretStr

from evol.cache import CachedChat, CallCache
from evol.config import RunConfig, api_key_from_env
from evol.llm import OpenAIChat
from evol.models import Node, Record, Rejection, Seed, Usage
from evol.pipeline import Evolver, Models, Outcome, Tally, bounded_map
from evol.progress import LiveTally, current
from evol.prompts import Profile
from evol.rundir import CACHE

#: an API key handed to run_with_prefect in code rather than through the environment; threads of this
#: process see it, other processes (Dask workers) read EVOL_API_KEY / OPENAI_API_KEY as usual
_process_key: SecretStr | None = None
#: set when the flow is interrupted: the batches running on this process's threads start no new call, so the
#: task runner's exit (which waits for them) comes once the calls in flight are answered, not the whole batch
STOP = threading.Event()


def api_key() -> SecretStr | None:
    return _process_key or api_key_from_env()


class Endpoint(BaseModel):
    """How batches reach the model, as resolved once by the flow: everything but the key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str
    identity: str  # the call cache's notion of "same endpoint" (the embedded server's differs from its URL)
    evolve_model: str
    respond_model: str
    judge_model: str
    seed_calls: bool = False  # each call sends its own sampling seed (the embedded model)

    @property
    def models(self) -> Models:
        return Models(evolve=self.evolve_model, respond=self.respond_model, judge=self.judge_model)


@dataclass
class BatchJob:
    """Everything a batch task needs; picklable, so Dask can ship it, and free of secrets."""

    config: RunConfig  # with api_key None
    profile: Profile
    endpoint: Endpoint
    run_dir: str
    run_key: str  # see run_key(): changes whenever anything that shapes an answer changes
    round_no: int  # 0 answers seeds (include_seeds), 1.. evolves the pool
    batch_no: int
    items: list  # Seeds for round 0, Nodes after
    concurrency: int  # connections this batch may hold open
    share: int = 1  # batches running at once: this one gets 1/share of --rpm and --tpm
    spent: dict = field(default_factory=dict)  # tokens by model before this batch, for --budget-usd

    @property
    def checkpoint(self) -> Path:
        return checkpoint_path(Path(self.run_dir), self.round_no, self.batch_no)

    @property
    def fingerprint(self) -> str:
        return batch_fingerprint(self.run_key, self.round_no, self.items)


@dataclass
class BatchResult:
    outcomes: list[Outcome]
    tally: dict  # Tally.as_dict() of this batch's calls
    hits: int = 0
    misses: int = 0
    restored: bool = False  # read back from a checkpoint: no call made, not even to the cache
    seconds: float = 0.0


async def run_batch(job: BatchJob) -> BatchResult:
    """Evolve (or answer) the batch's items with bounded concurrency; results in item order."""
    cfg = job.config
    key = api_key()
    chat = OpenAIChat(job.endpoint.base_url, key.get_secret_value() if key else None, identity=job.endpoint.identity,
                      timeout=cfg.timeout, max_retries=cfg.max_retries, concurrency=job.concurrency,
                      seed_calls=job.endpoint.seed_calls, **_rate_limits(cfg, job.share))
    cache = CallCache(Path(job.run_dir) / CACHE)
    cached = CachedChat(chat, cache)
    tally = LiveTally()
    # the budget check reads the Evolver's tally: start it at the run's spend so far, so the budget is the
    # run's, not the batch's (batches running side by side see each other's spend only afterwards)
    tally.by_model.update({m: Usage(**u) if isinstance(u, dict) else u for m, u in job.spent.items()})
    evolver = Evolver(cfg, job.profile, cached, job.endpoint.models, tally, stop=STOP)

    def books() -> dict:
        data = tally.as_dict()
        data["tokens_by_model"] = _minus(data["tokens_by_model"], job.spent)
        return data

    try:
        if job.round_no == 0:
            outcomes = await bounded_map(evolver.answer_seed, job.items, evolver.workers, current().item)
        else:
            outcomes = await evolver.run_round(job.items, job.round_no, current().item)
    except Exception as exc:
        # a stopped batch still paid for its answers: the manifest's usage and cost must count them
        exc.evol_batch = {"tally": books(), "hits": cached.hits, "misses": cached.misses}
        raise
    finally:
        await cached.aclose()
        cache.close()
    return BatchResult(outcomes=outcomes, tally=books(), hits=cached.hits, misses=cached.misses)


def _rate_limits(cfg: RunConfig, share: int) -> dict:
    """This batch's part of the run's request and token rates (for clients that take them)."""
    import inspect

    accepted = inspect.signature(OpenAIChat.__init__).parameters
    out: dict = {}
    for name in ("rpm", "tpm"):
        value = getattr(cfg, name, None)
        if name in accepted and value is not None:
            out[name] = value / max(1, share)
    if "rate_window" in accepted and getattr(cfg, "rate_window", None) is not None:
        out["rate_window"] = cfg.rate_window
    return out


def _minus(by_model: dict, spent: dict) -> dict:
    out = {}
    for model, usage in by_model.items():
        before = spent.get(model)
        before = before.model_dump() if isinstance(before, Usage) else (before or {})
        delta = {k: v - before.get(k, 0) for k, v in usage.items()}
        if any(delta.values()):
            out[model] = delta
    return out


# --- checkpoints: one JSONL file per finished batch, a header line then one outcome per line

CHECKPOINTS = "checkpoints"
FORMAT = 1


def checkpoint_path(run_dir: Path, round_no: int, batch_no: int) -> Path:
    folder = "seeds" if round_no == 0 else f"round-{round_no}"
    return run_dir / CHECKPOINTS / folder / f"batch-{batch_no:04d}.jsonl"


def run_key(config: RunConfig, profile: Profile, endpoint: Endpoint) -> str:
    """What every answer of a run depends on besides the batch's own items."""
    data = {
        "config": {k: v for k, v in config.public_dict().items() if k != "out"},
        "endpoint": [endpoint.identity, endpoint.evolve_model, endpoint.respond_model, endpoint.judge_model],
        "prompts": profile.template_hashes(),
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def batch_fingerprint(key: str, round_no: int, items: Sequence[Seed | Node]) -> str:
    """A checkpoint is reused only for the very same items under the very same run key."""
    h = hashlib.sha256(f"{FORMAT}:{key}:{round_no}".encode())
    for item in items:
        h.update(b"\0")
        h.update(item.model_dump_json().encode())
    return h.hexdigest()


def write_checkpoint(job: BatchJob, result: BatchResult) -> None:
    from evol.rundir import atomic_write

    def lines():
        head = {"evol_checkpoint": FORMAT, "fingerprint": job.fingerprint, "round": job.round_no,
                "batch": job.batch_no, "items": len(result.outcomes), "tally": result.tally}
        yield json.dumps(head) + "\n"
        for out in result.outcomes:
            kind = "record" if isinstance(out, Record) else "rejection"
            yield json.dumps({kind: out.model_dump(mode="json")}, ensure_ascii=False) + "\n"

    atomic_write(job.checkpoint, lines())


def read_checkpoint(job: BatchJob) -> BatchResult | None:
    """The batch's outcomes if a checkpoint of exactly this batch exists and is worth keeping, else None.

    A batch with failed items is run again, as the plain CLI does on a re-run: its answered calls come
    from the call cache, and only the failed ones go to the endpoint.
    """
    try:
        with open(job.checkpoint, encoding="utf-8") as f:
            head = json.loads(f.readline())
            if head.get("evol_checkpoint") != FORMAT or head.get("fingerprint") != job.fingerprint:
                return None
            outcomes: list[Outcome] = []
            for line in f:
                row = json.loads(line)
                outcomes.append(Record.model_validate(row["record"]) if "record" in row
                                else Rejection.model_validate(row["rejection"]))
    except (OSError, ValueError, KeyError):  # missing, or not ours: run the batch (the cache still answers)
        return None
    if len(outcomes) != len(job.items) or any(isinstance(o, Rejection) and o.kind == "failed" for o in outcomes):
        return None
    return BatchResult(outcomes=outcomes, tally=head.get("tally") or {}, restored=True)


# --- tallies of batches, added up in the flow

def add_tally(into: Tally, data: dict, *, restored: bool) -> None:
    """Add one batch's ``Tally.as_dict()``; a restored batch's calls count as answered from cache."""
    calls = data.get("calls", {})
    for stage, n in calls.items():
        into.calls[stage] += n
    for stage, n in (calls if restored else data.get("calls_from_cache", {})).items():
        into.cached[stage] += n
    for stage, n in data.get("calls_failed", {}).items():
        into.errors[stage] += n
    for stage, usage in data.get("tokens_by_stage", {}).items():
        into.tokens[stage] = into.tokens[stage] + Usage(**usage)
    for model, usage in data.get("tokens_by_model", {}).items():
        into.by_model[model] = into.by_model[model] + Usage(**usage)
    for stage, models in data.get("tokens_by_stage_model", {}).items():
        for model, usage in models.items():
            into.by_stage_model[stage, model] = into.by_stage_model[stage, model] + Usage(**usage)
