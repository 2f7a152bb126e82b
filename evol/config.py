"""Run configuration: one pydantic model shared by the CLI, config files and the Prefect flow."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)

from evol.errors import ConfigError
from evol.pricing import DEFAULT_PRICES, Price, batch_prices
from evol.rules import registry as rules
from evol.rundir.store import local_or_url, scheme_of

#: items in flight at once in batch mode (see ``RunConfig.workers``)
BATCH_WORKERS = 10_000

#: settings that change how a run spends, not what it makes: they stay out of the run id, so raising
#: ``--budget-usd`` or the concurrency and running again resumes the same run
EXECUTION_ONLY = (
    "out",
    "concurrency",
    "max_concurrency",
    "timeout",
    "max_retries",
    "rpm",
    "tpm",
    "rate_window",
    "budget_usd",
    "batch",
    "batch_poll_seconds",
)

#: options added after run ids were first handed out: left out of the run id while at their default, so a
#: run made before they existed keeps its id (and its folder and cache) when the same command runs again
ABSENT_AT_DEFAULT = {"answers": 1, "response_models": [], "evolve_answers": 0, "turns": 1}

#: every elimination rule a run can switch off with ``disable_rules``: the names of the one registry
RULES = rules.NAMES

DEFAULT_LEAK_PHRASES = (
    "given prompt",
    "rewritten prompt",
    "#rewritten prompt#",
    "created prompt",
    "#created prompt#",
    "#given prompt#",
)


#: the most tokens an answer cut at ``max_tokens`` is asked again with (twice ``max_tokens``, at most this)
RETRY_MAX_TOKENS = 8192


class Sampling(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(default=1.0, ge=0, le=2, description="sampling temperature")
    top_p: float = Field(default=0.95, gt=0, le=1, description="nucleus sampling")
    max_tokens: int = Field(default=2048, ge=1, description="max tokens of a reply")

    def with_more_room(self, cap: int | None = None) -> Sampling:
        """The same sampling with twice ``max_tokens`` (at most ``cap``): how a reply cut at the limit is asked again."""
        more = 2 * self.max_tokens
        return self.model_copy(update={"max_tokens": more if cap is None else min(more, cap)})


class RunConfig(BaseModel):
    """Everything that decides what a run does. Field names are the config-file keys and CLI options.

    A field's ``description`` is its ``--help`` text too (evol/cli/run_options.py makes the options).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # --- input
    seeds: str = Field(
        description="seed file (JSON, JSONL, CSV, Parquet, TXT) or a folder of them: a local path or an s3://, "
        "gs:// or az:// URL"
    )
    instruction_field: str | None = Field(
        default=None, description="field holding the instruction, for shapes not recognised on their own"
    )
    input_field: str | None = Field(default=None, description="field holding an input appended to the instruction")
    limit: int | None = Field(default=None, ge=1, description="use only the first N seeds")

    # --- the method
    profile: str = Field(default="general", description="evolution profile: general, code or math")
    rounds: int = Field(default=4, ge=1, le=50, description="evolution rounds")
    turns: int = Field(
        default=1,
        ge=1,
        le=20,
        description="the most user turns a conversation grows to: above 1, the follow_up operation adds a user turn "
        "that builds on the previous answer",
    )
    seed: int = Field(default=0, description="random seed for operation choice")
    operation_weights: dict[str, float] = Field(
        default_factory=dict, description="relative weights of the evolving operations, by name"
    )
    prompts_dir: Path | None = Field(
        default=None, description="folder of your own prompt templates (see prompts/README.md)"
    )
    disable_rules: list[str] = Field(default_factory=list, description="elimination rules switched off")
    sorry_max_words: int = Field(
        default=80,
        ge=1,
        description="an answer saying sorry in fewer words than this is a refusal, rule sorry_short_response",
    )
    leak_phrases: list[str] = Field(
        default_factory=lambda: list(DEFAULT_LEAK_PHRASES),
        description="phrases of the evolving prompt that must not appear in an evolution",
    )
    max_instruction_chars: int = Field(
        default=20_000, ge=1, description="an evolution longer than this many characters is eliminated, rule too_long"
    )

    # --- dedup
    dedup_threshold: float = Field(default=0.9, gt=0, le=1, description="near-duplicate similarity threshold, 0-1")
    dedup_scorer: Literal["ratio", "token_set_ratio", "token_sort_ratio", "partial_ratio", "WRatio"] = Field(
        default="ratio",
        description="rapidfuzz scorer: ratio, token_set_ratio, token_sort_ratio, partial_ratio, WRatio",
    )

    # --- backend
    base_url: str | None = Field(
        default=None,
        description="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 (key from EVOL_API_KEY or "
        "OPENAI_API_KEY)",
    )
    api_key: SecretStr | None = Field(default=None, exclude=True, repr=False)
    model: str | None = Field(default=None, description="model that evolves (and by default judges and answers)")
    response_model: str | None = Field(default=None, description="model that answers the evolved instructions")
    judge_model: str | None = Field(default=None, description="model that judges information gain")
    model_path: Path | None = Field(
        default=None, description="a local GGUF file to serve with llama.cpp instead of the embedded model"
    )
    concurrency: int | Literal["auto"] = Field(
        default="auto",
        description="requests in flight at once, or auto: found from the endpoint's 429s, 503s and latency, "
        "up to --max-concurrency (the embedded model's default is a fixed number)",
    )
    max_concurrency: int = Field(
        default=256, ge=1, le=4096, description="the most requests in flight that --concurrency auto may reach"
    )
    timeout: float = Field(default=120.0, gt=0, description="seconds before a request is abandoned and retried")
    max_retries: int = Field(default=6, ge=0, description="retries of a transient failure")
    rpm: float | None = Field(default=None, gt=0, description="at most this many requests in any minute")
    tpm: float | None = Field(
        default=None,
        gt=0,
        description="at most this many tokens (prompt + max_tokens, corrected by usage) in any minute",
    )
    rate_window: float = Field(
        default=60.0, gt=0, description="seconds that --rpm and --tpm count over; 1 for per-second limits"
    )
    budget_usd: float | None = Field(
        default=None, gt=0, description="stop cleanly once the run has cost this much (resumable)"
    )
    batch: bool = Field(
        default=False,
        description="send calls through the OpenAI Batch API: half the price, results within 24 h; resumable",
    )
    batch_poll_seconds: float = Field(default=30.0, gt=0, description="seconds between checks of a submitted batch")
    prices: dict[str, Price] = Field(
        default_factory=dict, description="per-model prices (USD per million tokens) on top of the defaults"
    )
    sampling: Sampling = Field(default=Sampling(), description="sampling for evolving")
    response_sampling: Sampling = Field(default=Sampling(), description="sampling for answering")
    # room for a short reasoning block before the verdict: reasoning models (served by vLLM or hosted) think
    # first, and 16 tokens ended most of their answers mid-thought; a plain model stops after a word or two,
    # so the larger budget costs it nothing. An answer cut off with no verdict is asked again with twice this.
    judge_sampling: Sampling = Field(
        default=Sampling(temperature=0.0, top_p=1.0, max_tokens=512), description="sampling for judging"
    )
    keep_judge_unclear: bool = Field(
        default=False,
        description="keep an evolution whose equality judge gave no readable verdict, twice (default: eliminate "
        "it under rule judge_unclear)",
    )

    # --- answers: several candidates, answer evolution, a ranking judge (one plain answer by default)
    answers: int = Field(
        default=1,
        ge=1,
        le=16,
        description="candidate answers per kept instruction; with more than one, a judge scores each 1-10 and the "
        "best becomes the output, while records.jsonl keeps them all",
    )
    response_models: list[str] = Field(
        default_factory=list, description="several responders: the candidate answers go round them"
    )
    evolve_answers: int = Field(
        default=0,
        ge=0,
        le=10,
        description="rounds that ask for a better answer in one direction (helpful, relevant, deeper, creative, "
        "detailed); an improved answer is kept only when the judge scores it higher",
    )

    # --- output
    # a string, not a Path: Path("s3://bucket/run") is the local folder "s3:/bucket/run", where a run once wrote
    out: str | None = Field(
        default=None,
        description="run folder: a local path or an s3://, gs:// or az:// URL (default datasets/runs/<run-id>; "
        "the same command resumes there)",
    )
    # WizardLM's training set is the seeds plus every evolved round, so a default run's dataset holds them too
    include_seeds: bool = Field(
        default=True,
        description="put the seeds in the dataset too, each with its own output where the seed file has one, "
        "else answered (--no-seeds leaves them out)",
    )

    @field_validator("disable_rules")
    @classmethod
    def _known_rules(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - set(RULES))
        if unknown:
            raise ValueError(f"unknown rule(s) {', '.join(unknown)}; known rules: {', '.join(RULES)}")
        return v

    @field_validator("seeds", "out", mode="before")
    @classmethod
    def _location(cls, v: Any) -> Any:
        if isinstance(v, os.PathLike):
            v = os.fspath(v)
        # a scheme evol cannot serve is its own one sentence (a ConfigError passes pydantic by, unwrapped)
        return local_or_url(v) if isinstance(v, str) else v

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v

    @field_validator("response_models")
    @classmethod
    def _distinct_models(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("names a model more than once")
        return v

    @property
    def candidate_count(self) -> int:
        """Candidate answers per instruction: ``answers``, and at least one per response model."""
        return max(self.answers, len(self.response_models))

    @field_validator("concurrency")
    @classmethod
    def _concurrency(cls, v: int | str) -> int | str:
        if isinstance(v, int) and not 1 <= v <= 4096:
            raise ValueError("must be auto or a number from 1 to 4096")
        return v

    @property
    def adaptive(self) -> bool:
        """Whether the concurrency is found from the endpoint (``--concurrency auto``) rather than fixed."""
        return self.concurrency == "auto"

    @property
    def connections(self) -> int:
        """The most requests in flight at once: the fixed concurrency, or the most auto may reach."""
        return self.max_concurrency if self.concurrency == "auto" else self.concurrency

    @property
    def workers(self) -> int:
        """Items of a round under way at once. Each makes up to three calls in sequence, so more items than
        connections keep the pipe full; through the Batch API every item's next call should wait in the same
        batch file, so then every item runs at once."""
        return BATCH_WORKERS if self.batch else self.connections * 2

    @property
    def ranks_answers(self) -> bool:
        """Whether the answer stage does more than one plain answer (and so needs the ranking judge)."""
        return self.candidate_count > 1 or self.evolve_answers > 0

    def price_table(self) -> dict[str, Price]:
        table = {**DEFAULT_PRICES, **self.prices}  # list prices; a --batch run pays the Batch API's half
        return batch_prices(table) if self.batch else table

    def rule_on(self, rule: str) -> bool:
        return rule not in self.disable_rules

    def public_dict(self) -> dict[str, Any]:
        """The config as JSON-ready data, without secrets (for manifests, logs and Prefect)."""
        return json.loads(self.model_dump_json(exclude={"api_key"}))

    def explicit_dict(self) -> dict[str, Any]:
        """Only the options that were set (config file, command line, flow parameters), JSON-ready, without secrets.

        A config rebuilt from it still tells the user's choices from the defaults, which ``tune_for_local``
        fills for the embedded model; rebuilt from ``public_dict`` every option would look chosen.
        """
        return json.loads(self.model_dump_json(exclude={"api_key"}, exclude_unset=True))


def api_key_from_env() -> SecretStr | None:
    for name in ("EVOL_API_KEY", "OPENAI_API_KEY"):
        value = os.environ.get(name)
        if value:
            return SecretStr(value)
    return None


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML, YAML or JSON config file into a dict of RunConfig keys."""
    if not path.is_file():
        raise ConfigError(f"Config file {path} does not exist.")
    text = path.read_bytes()
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text.decode("utf-8"))
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"Config file {path} must end in .toml, .yaml, .yml or .json.")
    except (tomllib.TOMLDecodeError, yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Config file {path} is not valid: {_first_line(exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold a table of options at the top level.")
    if "api_key" in data:
        raise ConfigError(f"Config file {path} holds an api_key; put it in EVOL_API_KEY instead, never in a file.")
    # relative paths in a config file are relative to the file, as users expect
    for key in ("seeds", "out", "prompts_dir"):
        if isinstance(data.get(key), str) and scheme_of(data[key]) is None and not Path(data[key]).is_absolute():
            data[key] = str(path.parent / data[key])
    return data


def build_config(file_values: dict[str, Any], overrides: dict[str, Any]) -> RunConfig:
    """Merge config-file values with CLI overrides (CLI wins) and validate."""
    merged = {**file_values, **{k: v for k, v in overrides.items() if v is not None}}
    if merged.get("api_key") is None:
        merged["api_key"] = api_key_from_env()
    try:
        return RunConfig(**merged)
    except ValidationError as exc:
        raise ConfigError(explain_validation(exc)) from None


def explain_validation(exc: ValidationError) -> str:
    """pydantic's message, shortened to the point: which option, what is wrong."""
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err["loc"]) or "config"
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown option '{where}'")
        elif err["type"] == "missing":
            parts.append(f"option '{where}' is required")
        else:
            parts.append(f"option '{where}': {err['msg']}")
    more = len(exc.errors()) - len(parts)
    return "Invalid configuration: " + "; ".join(parts) + (f" (and {more} more)" if more > 0 else "") + "."


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
