"""``python -m evol score``: an LLM judge rates each kept instruction's difficulty 1-10 into RUN_DIR/scores.jsonl.

The calls go through the run's call cache, so scoring again (after a crash, or to redraw the report)
pays only for what was never answered; a new model or prompt makes new calls.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import sys
from pathlib import Path

from ..errors import ConfigError

log = logging.getLogger("evol")

SCORES = "scores.jsonl"
_NUMBER = re.compile(r"(?<![\d.])\d+(?:\.\d+)?")


def add_parser(sub) -> None:
    p = sub.add_parser("score", help="have an LLM rate the difficulty (1-10) of every kept instruction of a run",
                       description="Rate the difficulty of each kept instruction (and of the seeds, when the seed file "
                                   "is still there) 1-10 with an LLM judge; writes RUN_DIR/scores.jsonl, which "
                                   "'python -m evol report' plots per round. Uses the run's backend unless overridden.")
    p.add_argument("run", type=Path, metavar="RUN_DIR", help="run folder written by 'python -m evol run'")
    p.add_argument("--base-url", help="OpenAI-compatible endpoint (default: the run's; key from EVOL_API_KEY or OPENAI_API_KEY)")
    p.add_argument("--model", help="the judging model (default: the run's judge model)")
    p.add_argument("--concurrency", type=int, help="requests in flight at once (default: the run's)")
    p.add_argument("--prompt", type=Path, help="your own scoring template with an ${instruction} slot (default prompts/score.txt)")
    p.add_argument("--no-seeds", dest="seeds", action="store_false", help="do not score the seeds for a round-0 baseline")
    p.set_defaults(func=main)


def parse_score(text: str) -> float | None:
    """The first number of the answer if it is within 1-10 ("7", "7/10", "Difficulty: 8"), else None."""
    m = _NUMBER.search(text or "")
    if m is None:
        return None
    value = float(m.group())
    if not 1 <= value <= 10:
        return None
    return int(value) if value.is_integer() else value


def run_config(manifest: dict, args: argparse.Namespace):
    """The run's own configuration, with this command's overrides; keys a newer or older evol lacks are dropped."""
    from pydantic import ValidationError

    from ..config import RunConfig, api_key_from_env, explain_validation

    values = {k: v for k, v in (manifest.get("config") or {}).items() if k in RunConfig.model_fields}
    if args.base_url:
        values["base_url"] = args.base_url
    if args.model:
        values["model"] = values["judge_model"] = args.model
    else:
        # the run's judge, as it was resolved then (the config may have left it to the endpoint to choose)
        judge = (manifest.get("backend") or {}).get("judge_model")
        values["judge_model"] = values.get("judge_model") or judge
        values["model"] = values.get("model") or judge
    if args.concurrency:
        values["concurrency"] = args.concurrency
    values["api_key"] = api_key_from_env()
    try:
        return RunConfig(**values)
    except ValidationError as exc:
        raise ConfigError(explain_validation(exc)) from None


async def score_run(run_dir: Path, config, items: list[tuple[str, int, str]], prompt) -> dict:
    """Score ``items`` (id, round, instruction); write scores.jsonl; return a summary."""
    from ..backend import open_backend
    from ..cache import CachedChat, CallCache
    from ..errors import BackendError
    from ..rundir import CACHE, write_jsonl

    results: list[dict] = []
    failed = 0
    async with open_backend(config) as (chat, models, config):
        cache = CallCache(run_dir / CACHE)
        cached = CachedChat(chat, cache)

        async def one(item: tuple[str, int, str]) -> dict | None:
            nonlocal failed
            rid, rnd, text = item
            messages = [{"role": "user", "content": prompt.render(instruction=text)}]
            try:
                c = await cached.complete(messages, model=models.judge, sampling=config.judge_sampling, sample=f"{rid}:score")
            except BackendError as exc:
                if exc.fatal:
                    raise
                failed += 1  # this one request was refused; the others still count
                log.warning("score: %s failed: %s", rid, exc)
                return None
            score = parse_score(c.text)
            row = {"id": rid, "round": rnd, "score": score, "model": models.judge, "prompt_sha256": prompt.sha256}
            if score is None:
                row["answer"] = c.text[:200]
            return row

        pending = iter(items)

        async def worker() -> None:
            # a fixed pool of workers, not one task per item: a run can keep hundreds of thousands
            for item in pending:
                row = await one(item)
                if row is not None:
                    results.append(row)

        try:
            await asyncio.gather(*(worker() for _ in range(min(config.concurrency, len(items)))))
        finally:
            cache.close()
    order = {rid: i for i, (rid, _, _) in enumerate(items)}
    results.sort(key=lambda r: order[r["id"]])
    write_jsonl(run_dir / SCORES, results)
    scored = [r for r in results if r["score"] is not None]
    return {"scores": str(run_dir / SCORES), "scored": len(scored), "unparsed": len(results) - len(scored),
            "failed": failed, "from_cache": cached.hits, "model": models.judge}


def main(args: argparse.Namespace) -> int:
    from ..export import load_run
    from ..prompts import Prompt, default_prompts_dir
    from ..runstats import run_seeds
    from ..rundir import RunDir

    run = load_run(args.run)
    prompt = Prompt.load(args.prompt or default_prompts_dir() / "score.txt", {"instruction"})
    config = run_config(run.manifest, args)
    items = [(r["id"], int(r["round"]), r["instruction"]) for r in run.records]
    if args.seeds:
        have = {rid for rid, _, _ in items}
        seeds = run_seeds(run)
        items = [(sid, 0, text) for sid, text in seeds if sid not in have] + items
        if not seeds and not any(r == 0 for _, r, _ in items):
            log.info("score: the seed file is not where the run read it; no round-0 baseline")
    if not items:
        raise ConfigError(f"{args.run} kept no instructions; there is nothing to score.")
    with RunDir(run.path):  # not while a run is writing into the same folder
        summary = asyncio.run(score_run(run.path, config, items, prompt))
    log.info("score: %d scored, %d unreadable answers, %d failed, %d from cache",
             summary["scored"], summary["unparsed"], summary["failed"], summary["from_cache"])
    print(json.dumps(summary), file=sys.stdout)
    return 0
