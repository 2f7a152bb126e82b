"""``python -m evol score``: an LLM judge rates each kept row's complexity and quality 1-10 into RUN_DIR/scores.jsonl.

The work is evol.quality.scoring's; this module reads the options and the run's own configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from evol.cli.run_options import concurrency_value
from evol.errors import ConfigError, InputError
from evol.rundir.store import is_remote

if TYPE_CHECKING:
    from evol.config import RunConfig
    from evol.quality.scoring import Item, Method
    from evol.rundir.folder import RunDir
    from evol.rundir.manifest import Manifest
    from evol.rundir.reader import Run

log = logging.getLogger("evol")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "score",
        help="have an LLM rate every kept row's complexity and quality (1-10 each)",
        description="Rate each kept instruction's complexity and its answer's quality 1-10 with an LLM "
        "judge (and the seeds' complexity, when the seed file is still there), by default each seed's "
        "lineage side by side (--method evol) or each row alone (--method direct); writes "
        "RUN_DIR/scores.jsonl, which 'evol export --select' ranks by and 'evol report' plots. "
        "Uses the run's backend and call cache: scoring again pays only for what is new.",
    )
    p.add_argument("run", metavar="RUN_DIR", help="run folder written by 'python -m evol run', a path or a URL")
    p.add_argument(
        "--method",
        choices=("evol", "direct"),
        default="evol",
        help="evol (default): the judge scores a seed and its kept evolutions side by side, against one another "
        "(Deita's EVOL COMPLEXITY and EVOL QUALITY); direct: each row alone",
    )
    p.add_argument(
        "--base-url", help="OpenAI-compatible endpoint (default: the run's; key from EVOL_API_KEY or OPENAI_API_KEY)"
    )
    p.add_argument("--model", help="the judging model (default: the run's judge model)")
    p.add_argument(
        "--concurrency",
        type=concurrency_value,
        metavar="N|auto",
        help="requests in flight at once, or auto (default: the run's)",
    )
    p.add_argument(
        "--budget-usd", type=float, help="stop cleanly once scoring has cost this much (the same command goes on)"
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="pay for nothing: print the calls scoring would make (those not in the run's cache), tokens, cost and time",
    )
    p.add_argument(
        "--complexity-prompt",
        "--prompt",
        dest="complexity_prompt",
        type=Path,
        help="your own complexity template: an ${instruction} slot with --method direct (default "
        "prompts/complexity.txt), a ${variants} slot with evol (default prompts/complexity_evol.txt)",
    )
    p.add_argument(
        "--quality-prompt",
        type=Path,
        help="your own quality template: ${instruction} and ${output} slots with --method direct (default "
        "prompts/quality.txt), a ${variants} slot with evol (default prompts/quality_evol.txt)",
    )
    p.add_argument(
        "--no-seeds", dest="seeds", action="store_false", help="do not score the seeds for a round-0 baseline"
    )
    p.set_defaults(func=main)


def run_config(manifest: Manifest, args: argparse.Namespace) -> RunConfig:
    """The run's own configuration, with this command's overrides; keys a newer or older evol lacks are dropped."""
    from pydantic import ValidationError

    from evol.config import RunConfig, api_key_from_env, explain_validation

    values = {k: v for k, v in manifest.config.items() if k in RunConfig.model_fields}
    if args.base_url:
        values["base_url"] = args.base_url
    if args.model:
        values["model"] = values["judge_model"] = args.model
    else:
        # the run's judge, as it was resolved then (the config may have left it to the endpoint to choose)
        judge = manifest.backend.judge_model
        values["judge_model"] = values.get("judge_model") or judge
        values["model"] = values.get("model") or judge
    if args.concurrency:
        values["concurrency"] = args.concurrency
    values["budget_usd"] = args.budget_usd  # the run's own budget was for the run, not for scoring it
    values["api_key"] = api_key_from_env()
    try:
        return RunConfig(**values)
    except ValidationError as exc:
        raise ConfigError(explain_validation(exc)) from None


def main(args: argparse.Namespace) -> int:
    from evol.rundir.folder import MANIFEST, RECORDS, REJECTED, SCORES, RunDir
    from evol.rundir.reader import load_run

    if not is_remote(args.run):
        run = load_run(Path(args.run))
        with RunDir(run.path) as run_dir:  # not while a run is writing into the same folder
            return _score(args, run, run_dir)
    with RunDir(args.run) as run_dir:  # at a URL: the store checked, the files scoring reads copied here
        remote = run_dir.remote
        assert remote is not None
        remote.pull(run_dir.path, [n for n in (MANIFEST, RECORDS, REJECTED, SCORES) if remote.exists(n)])
        if not (run_dir.path / MANIFEST).is_file():
            raise InputError(f"{run_dir.where} has no {MANIFEST}; is it a run folder of 'python -m evol run'?")
        return _score(args, load_run(run_dir.path), run_dir)


def _score(args: argparse.Namespace, run: Run, run_dir: RunDir) -> int:
    from evol.prompts import Prompt, default_prompts_dir
    from evol.quality.scoring import Item, score_items
    from evol.report.stats import run_seeds

    shipped = default_prompts_dir()
    if args.method == "evol":
        prompts = {
            "complexity": Prompt.load(args.complexity_prompt or shipped / "complexity_evol.txt", {"variants"}),
            "quality": Prompt.load(args.quality_prompt or shipped / "quality_evol.txt", {"variants"}),
        }
    else:
        prompts = {
            "complexity": Prompt.load(args.complexity_prompt or shipped / "complexity.txt", {"instruction"}),
            "quality": Prompt.load(args.quality_prompt or shipped / "quality.txt", {"instruction", "output"}),
        }
    config = run_config(run.manifest, args)
    items = [Item(r.id, r.round, r.instruction, r.output, r.seed_id) for r in run.records]
    if args.seeds:
        have = {item.id for item in items}
        seeds = run_seeds(run)
        items = [Item(sid, 0, text, seed_id=sid) for sid, text in seeds if sid not in have] + items
        if not seeds and not any(item.round == 0 for item in items):
            log.info("score: the seed file is not where the run read it; no round-0 baseline")
    if not items:
        raise ConfigError(f"{run_dir.where} kept no instructions; there is nothing to score.")
    if args.dry_run:
        from evol.evolve.progress import describe_estimate
        from evol.llm.local.setup import is_embedded, tune_for_local

        identity = run.manifest.backend.identity
        judged = tune_for_local(config) if is_embedded(identity) else config
        model = config.judge_model or run.manifest.backend.judge_model or "?"
        est = _plan(run_dir, judged, items, prompts, identity, model, args.method)
        print(describe_estimate(est, config.connections, what=f"scoring {len(items)} rows"), file=sys.stderr)
        print(json.dumps(est.model_dump(mode="json")), file=sys.stdout)
        return 0
    summary = asyncio.run(score_items(run_dir, config, items, prompts, args.method))
    from evol.rundir.manifest import self_judged_note

    wrote = run.manifest.backend.model_copy(update={"judge_model": summary["model"]}).self_judged()
    summary["self_judged"] = list(wrote)
    if wrote:  # a warning, not info: -q leaves it on screen
        log.warning("score: %s", self_judged_note(summary["model"], wrote))
    log.info(
        "score: %d rows, complexity for %d, quality for %d, unclear %s, %d calls (%d from cache)",
        summary["rows"],
        summary["complexity"],
        summary["quality"],
        summary["unclear"] or "none",
        summary["calls"],
        summary["from_cache"],
    )
    print(json.dumps(summary), file=sys.stdout)
    return 0


def _plan(
    run_dir: RunDir, config: RunConfig, items: list[Item], prompts: dict, identity: str, model: str, method: Method
):
    """``evol score --dry-run``: the calls scoring would pay for (those not in the run's call cache already), their
    tokens, cost and time; sends nothing."""
    from evol.evolve.estimate import calls_estimate
    from evol.llm.cache import call_key, open_cache
    from evol.quality.scoring import asks, sampling_for

    chars, cached, room = [], 0, config.judge_sampling.max_tokens
    todo = asks(items, method)
    cache = open_cache(run_dir)
    try:
        for ask in todo:
            messages = [{"role": "user", "content": prompts[ask.criterion].render(**ask.values)}]
            sampling = sampling_for(ask, config)
            room = max(room, sampling.max_tokens)
            if cache.get(call_key(identity, model, messages, sampling, ask.sample)) is not None:
                cached += 1
            else:
                chars.append(len(messages[0]["content"]))
    finally:
        cache.close()
    source = f"the prompts themselves; {cached} of the calls are in the run's cache already (free)"
    # a score and a one-line reason (one line per version side by side), or a reasoning model's thinking first
    lines = sum(len(a.items) for a in todo) / max(1, len(todo))
    completion = (4.0, 30.0 * max(1.0, lines), float(room))
    return calls_estimate("score", chars, completion, model, config, source=source)
