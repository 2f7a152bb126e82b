"""The options ``run``, ``serve`` and ``optimize`` share, and the RunConfig they make."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..config import RULES, RunConfig, build_config, read_config_file
from ..errors import ConfigError


def add_engine_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--engine",
        choices=("prefect", "local"),
        default=os.environ.get("EVOL_ENGINE") or "prefect",
        help=f"prefect (default): {what}; local: the same work in this process, without Prefect's "
        f"few seconds of start-up (default from EVOL_ENGINE)",
    )


def quiet_prefect(args: argparse.Namespace) -> None:
    """Once Prefect is imported: keep its logging out of the user's terminal unless --verbose (no traceback for an
    error the CLI reports in one sentence). Importing Prefect can replace the root logger's handlers, and with
    them the filter put there before (it did under pytest)."""
    if not args.verbose:
        from ..cli import quiet_orchestrator

        quiet_orchestrator()


def add_run_options(p: argparse.ArgumentParser) -> None:
    """The options of a run; ``serve`` and ``optimize`` take them too."""
    g = p.add_argument_group("input")
    g.add_argument("--config", type=Path, help="TOML, YAML or JSON file of options (command-line options override it)")
    g.add_argument("--seeds", type=Path, help="seed file (JSON, JSONL, CSV, Parquet, TXT) or a folder of them")
    g.add_argument("--instruction-field", help="field holding the instruction, for shapes not recognised on their own")
    g.add_argument("--input-field", help="field holding an input appended to the instruction")
    g.add_argument("--limit", type=int, help="use only the first N seeds")

    g = p.add_argument_group("method")
    g.add_argument("--profile", help="evolution profile: general, code or math (default general)")
    g.add_argument("--rounds", type=int, help="evolution rounds (default 4)")
    g.add_argument("--seed", type=int, help="random seed for operation choice (default 0)")
    g.add_argument(
        "--operation-weight",
        action="append",
        metavar="OP=W",
        help="weight of an operation, e.g. mutation=2 (repeatable)",
    )
    g.add_argument(
        "--prompts-dir", type=Path, help="folder of your own prompt templates (see evol/templates/README.md)"
    )
    g.add_argument(
        "--disable-rule",
        action="append",
        choices=RULES,
        metavar="RULE",
        help=f"switch an elimination rule off (repeatable): {', '.join(RULES)}",
    )
    g.add_argument(
        "--keep-judge-unclear",
        action="store_true",
        default=None,
        help="keep an evolution whose equality judge gave no readable verdict, twice (default: eliminate "
        "it under rule judge_unclear)",
    )
    g.add_argument(
        "--answers",
        type=int,
        metavar="N",
        help="candidate answers per kept instruction (default 1); with more than one, a judge scores each "
        "1-10 and the best becomes the output (records.jsonl keeps them all)",
    )
    g.add_argument(
        "--evolve-answers",
        type=int,
        metavar="K",
        help="rounds that ask for a better answer in one direction (helpful, relevant, deeper, creative, "
        "detailed); an improved answer is kept only when the judge scores it higher (default 0)",
    )
    g.add_argument("--dedup-threshold", type=float, help="near-duplicate similarity threshold, 0-1 (default 0.9)")
    g.add_argument(
        "--dedup-scorer", help="rapidfuzz scorer: ratio, token_set_ratio, token_sort_ratio, partial_ratio, WRatio"
    )

    g = p.add_argument_group("backend")
    g.add_argument(
        "--base-url",
        help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 (key from EVOL_API_KEY or OPENAI_API_KEY)",
    )
    g.add_argument("--model", help="model that evolves (and by default judges and answers)")
    g.add_argument(
        "--response-model",
        action="append",
        metavar="MODEL",
        help="model that answers the evolved instructions; repeat it to draw candidate answers from "
        "several models in turn (see --answers)",
    )
    g.add_argument("--judge-model", help="model that judges information gain")
    g.add_argument(
        "--model-path", type=Path, help="a local GGUF file to serve with llama.cpp instead of the embedded model"
    )
    g.add_argument("--concurrency", type=int, help="requests in flight at once (default 32)")
    g.add_argument("--timeout", type=float, help="seconds before a request is abandoned and retried (default 120)")
    g.add_argument("--max-retries", type=int, help="retries of a transient failure (default 6)")
    g.add_argument("--rpm", type=float, help="at most this many requests in any minute")
    g.add_argument(
        "--tpm", type=float, help="at most this many tokens (prompt + max_tokens, corrected by usage) in any minute"
    )
    g.add_argument("--budget-usd", type=float, help="stop cleanly once the run has cost this much (resumable)")
    g.add_argument(
        "--batch",
        action="store_true",
        default=None,
        help="send calls through the OpenAI Batch API: half the price, results within 24 h; resumable",
    )
    g.add_argument("--temperature", type=float, help="sampling temperature for evolving and answering (default 1)")
    g.add_argument("--top-p", type=float, help="nucleus sampling for evolving and answering (default 0.95)")
    g.add_argument("--max-tokens", type=int, help="max tokens of an evolution or an answer (default 2048)")

    g = p.add_argument_group("output")
    g.add_argument(
        "--out", type=Path, help="run folder (default datasets/runs/<run-id>; the same command resumes there)"
    )
    g.add_argument("--include-seeds", action="store_true", default=None, help="put the seeds in the dataset too")


#: RunConfig fields whose option takes another shape: a repeatable --response-model (one responder, or candidates)
_TRANSLATED = frozenset({"response_model"})


def config_from_args(args: argparse.Namespace):
    file_values = read_config_file(args.config) if args.config else {}
    # every option named after a RunConfig field is that field (unset options are None and left to the file and
    # the defaults); the few that are shaped differently on the command line are translated below
    given = vars(args)
    overrides = {k: given[k] for k in RunConfig.model_fields if k in given and k not in _TRANSLATED}
    if args.disable_rule:
        overrides["disable_rules"] = args.disable_rule
    if args.response_model:  # once: the responder; more: candidates go round them, the first is the responder
        overrides["response_model"] = args.response_model[0]
        if len(args.response_model) > 1:
            overrides["response_models"] = args.response_model
    if args.operation_weight:
        overrides["operation_weights"] = _weights(args.operation_weight)
    sampling = {
        k: v
        for k, v in (("temperature", args.temperature), ("top_p", args.top_p), ("max_tokens", args.max_tokens))
        if v is not None
    }
    if sampling:
        for key in ("sampling", "response_sampling"):
            overrides[key] = {**file_values.get(key, {}), **sampling}
    if "seeds" not in file_values and args.seeds is None:
        raise ConfigError("No seeds given; pass --seeds FILE (or set seeds in the --config file).")
    return build_config(file_values, overrides)


def _weights(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--operation-weight takes OP=WEIGHT, e.g. mutation=2; got '{item}'.") from None
        if not sep:
            raise ConfigError(f"--operation-weight takes OP=WEIGHT, e.g. mutation=2; got '{item}'.")
    return out


def add_prefect_options(p: argparse.ArgumentParser) -> None:
    """Options of a run through Prefect; ``run`` can reuse them."""
    g = p.add_argument_group("prefect")
    g.add_argument(
        "--chunk-size",
        "--batch-size",
        dest="chunk_size",
        type=int,
        default=None,
        help="pool entries per chunk task (default 256); a finished chunk is checkpointed "
        "(--batch-size, its old name, still works)",
    )
    g.add_argument("--dask-address", metavar="tcp://HOST:PORT", help="run the chunks on this Dask cluster")
    g.add_argument(
        "--dask-workers", type=int, metavar="N", help="run the chunks on a local Dask cluster of N processes"
    )


def prefect_kwargs(args: argparse.Namespace) -> dict:
    """The keyword arguments of ``evol.flows.run_with_prefect`` / ``evol.flows.serving.serve`` from parsed options."""
    if args.chunk_size is not None and args.chunk_size < 1:
        raise ConfigError("--chunk-size must be at least 1.")
    if args.dask_workers is not None and args.dask_workers < 1:
        raise ConfigError("--dask-workers must be at least 1.")
    if args.dask_address and args.dask_workers:
        raise ConfigError("Give --dask-address or --dask-workers, not both.")
    out = {"dask_address": args.dask_address, "dask_workers": args.dask_workers}
    if args.chunk_size is not None:
        out["chunk_size"] = args.chunk_size
    return out
