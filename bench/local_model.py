"""Speed of the embedded local model on this machine: ``python -m bench.local_model [--requests N] [--model-path F]``.

Starts the same LocalServer a run starts, sends evolution prompts built from the shipped seeds one at a time
(streamed, so reading the prompt and writing the answer are timed apart), and prints medians. With
``--base-url`` it times a server that is already running instead (another llama.cpp build serving the same
GGUF, say), with the same prompts and sampling, so two builds compare side by side.

``--replicas`` times what a run gets instead: the same prompts sent two per server at once through the run's
own client (LocalChat over a LocalPool), for each layout given (``--replicas 1x1 1x2 2x1``: servers x threads
each), interleaved over ``--repeats`` so each layout meets the same machine; it prints each layout's median
throughput and its ratio to the first.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import sys
import time
from pathlib import Path

from evol.config import RunConfig
from evol.llm.local.server import LocalServer
from evol.llm.local.setup import LOCAL_MAX_TOKENS
from evol.prompts import load_profile
from evol.seeds import load_seeds

SEEDS = Path(__file__).resolve().parent.parent / "datasets" / "seeds" / "self_instruct_seed_tasks.jsonl"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.local_model", description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=12, help="completions to time (default 12)")
    p.add_argument(
        "--max-tokens", type=int, default=LOCAL_MAX_TOKENS, help=f"per completion (default {LOCAL_MAX_TOKENS})"
    )
    p.add_argument("--model-path", type=Path, help="a GGUF file instead of the embedded SmolLM2")
    p.add_argument("--threads", type=int, help="llama.cpp threads generating (default: LocalServer's)")
    p.add_argument("--batch-threads", type=int, help="llama.cpp threads reading the prompt (default: LocalServer's)")
    p.add_argument("--base-url", help="time this running OpenAI-compatible server instead of starting one")
    p.add_argument("--model", default="", help="the model name to send with --base-url")
    p.add_argument("--replicas", nargs="+", metavar="NxT", help="layouts to compare: N servers of T threads each")
    p.add_argument("--repeats", type=int, default=3, help="rounds over the --replicas layouts (default 3)")
    args = p.parse_args(argv)
    if args.replicas:
        return compare_layouts(args)

    import openai

    profile = load_profile("general")
    seeds = load_seeds(SEEDS, limit=args.requests).seeds
    rng = random.Random(0)
    prompts = [profile.choose(rng).render(s.instruction, rng) for s in seeds]
    t0 = time.perf_counter()
    server: contextlib.AbstractContextManager[object]
    if args.base_url:
        server, name = contextlib.nullcontext(), args.model
        label = f"model {args.model or '(default)'} at {args.base_url}"
    else:
        config = RunConfig(seeds=str(SEEDS), model_path=args.model_path)
        local = LocalServer.from_config(config, n_threads=args.threads, n_threads_batch=args.batch_threads)
        server, name = local, local.model_name
        label = (
            f"model {local.model_name} ({local.identity}), {local.n_threads}/{local.n_threads_batch} threads "
            f"(generating/reading), n_ctx {local.n_ctx}"
        )
    with server:
        url = args.base_url or local.base_url
        started = time.perf_counter() - t0
        client = openai.OpenAI(base_url=url, api_key="no-key")
        first, decode, overall, tokens = [], [], [], 0
        for prompt in prompts:
            t = time.perf_counter()
            t_first, n = None, 0
            stream = client.chat.completions.create(
                model=name,
                messages=[{"role": "user", "content": prompt}],
                max_tokens=args.max_tokens,
                temperature=1.0,
                top_p=0.95,
                stream=True,
            )
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    n += 1  # llama.cpp streams one token per chunk
                    if t_first is None:
                        t_first = time.perf_counter()
            end = time.perf_counter()
            if t_first is None or n < 2:
                continue
            tokens += n
            first.append(t_first - t)
            decode.append((n - 1) / (end - t_first))
            overall.append(n / (end - t))
    print(label)
    print(f"server ready in {started:.1f} s; {len(decode)} completions, {tokens} tokens in all")
    if decode:
        print(f"median time to first token {statistics.median(first) * 1000:.0f} ms (reading a ~250-token prompt)")
        print(f"median generation speed     {statistics.median(decode):.1f} completion tokens/s")
        print(
            f"median end-to-end speed     {statistics.median(overall):.1f} completion tokens/s (prompt reading included)"
        )
    return 0


def compare_layouts(args: argparse.Namespace) -> int:
    """Median completion tokens/s of each servers x threads layout, with two calls in flight per server."""
    import asyncio

    from evol.config import Sampling
    from evol.llm.local.server import LocalChat, LocalPool

    try:
        layouts = [tuple(int(x) for x in r.lower().split("x")) for r in args.replicas]
    except ValueError:
        print(f"--replicas takes NxT layouts (2x1: two servers of one thread each); got {args.replicas}")
        return 2
    profile = load_profile("general")
    seeds = load_seeds(SEEDS, limit=args.requests).seeds
    rng = random.Random(0)
    prompts = [profile.choose(rng).render(s.instruction, rng) for s in seeds]
    config = RunConfig(seeds=str(SEEDS), model_path=args.model_path)
    sampling = Sampling(max_tokens=args.max_tokens)

    async def drive(pool: LocalPool) -> float:
        chat = LocalChat(pool, pool.base_url, None, identity=pool.identity, seed_calls=True)
        work = list(enumerate(prompts))
        tokens = 0

        async def worker() -> None:
            nonlocal tokens
            while work:
                i, prompt = work.pop()
                c = await chat.complete(
                    [{"role": "user", "content": prompt}], model=pool.model_name, sampling=sampling, sample=str(i)
                )
                tokens += c.usage.completion_tokens

        t = time.perf_counter()
        try:
            await asyncio.gather(*(worker() for _ in range(2 * len(pool.servers))))
        finally:
            await chat.aclose()
        return tokens / (time.perf_counter() - t)

    speeds: dict[tuple[int, ...], list[float]] = {lay: [] for lay in layouts}
    for _ in range(args.repeats):
        for n, threads in layouts:
            with LocalPool.from_config(config, replicas=n, n_threads=threads) as pool:
                speeds[(n, threads)].append(asyncio.run(drive(pool)))
    base = statistics.median(speeds[layouts[0]])
    print(
        f"{len(prompts)} prompts, max_tokens {args.max_tokens}, two calls in flight per server, {args.repeats} rounds"
    )
    print("| servers x threads | tokens/s (each round) | median | / first |")
    print("|---|---|---|---|")
    for lay, xs in speeds.items():
        med = statistics.median(xs)
        print(f"| {lay[0]}x{lay[1]} | {', '.join(f'{x:.1f}' for x in xs)} | {med:.1f} | {med / base:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
