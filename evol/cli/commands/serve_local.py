"""``python -m evol serve-local``: keep the embedded llama.cpp server running for other tools and repeated runs."""

from __future__ import annotations

import argparse
import errno
import signal
import socket
import sys
import time
from pathlib import Path

from evol.errors import ConfigError

DEFAULT_PORT = 8765
DEFAULT_CTX = 4096  # room for a run's default 2048-token answers after a long prompt


def add_parser(sub) -> None:
    p = sub.add_parser(
        "serve-local",
        help="keep the embedded local model running as an OpenAI-compatible server",
        description="Serve the embedded SmolLM2-135M-Instruct (or any GGUF file) with llama.cpp on 127.0.0.1 until "
        "Ctrl-C, for repeated runs or other tools; point `python -m evol run --base-url` at the URL "
        "it prints.",
    )
    p.add_argument("--model-path", type=Path, help="a GGUF file to serve instead of the embedded model")
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port on 127.0.0.1 (default {DEFAULT_PORT}; 0 picks a free one). A fixed port keeps "
        f"--base-url, and so the run id, the same from one session to the next",
    )
    p.add_argument("--n-ctx", type=int, default=DEFAULT_CTX, help=f"context size in tokens (default {DEFAULT_CTX})")
    p.add_argument("--threads", type=int, help="threads generating tokens (default: every core but one)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from evol.llm.local.server import LocalServer
    from evol.llm.local.setup import LOCAL_CONCURRENCY, LOCAL_MAX_TOKENS, LOCAL_TIMEOUT, resolve_model

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535; got {args.port}.")
    if args.n_ctx < 256:
        raise ConfigError(f"--n-ctx must be at least 256 tokens; got {args.n_ctx}.")
    if args.port:
        _check_port_free(LocalServer.host, args.port)
    server = LocalServer(
        resolve_model(args.model_path), n_ctx=args.n_ctx, port=args.port or None, n_threads=args.threads
    )
    # Ctrl-C and a plain `kill` both stop the server cleanly, even where the shell started us ignoring SIGINT
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        with server:
            print(server.base_url, flush=True)  # alone on stdout, for scripts
            print(
                f"evol: serving {server.model_name} ({server.n_threads} threads, context {server.n_ctx}) at "
                f"{server.base_url}; Ctrl-C stops it.\n"
                f"evol: use it with: python -m evol run --base-url {server.base_url} "
                f"--concurrency {LOCAL_CONCURRENCY} --max-tokens {LOCAL_MAX_TOKENS} --timeout {LOCAL_TIMEOUT:.0f} "
                f"--seeds ...",
                file=sys.stderr,
                flush=True,
            )
            while True:
                server.check_running()
                time.sleep(0.5)
    except KeyboardInterrupt:
        print("evol: local server stopped.", file=sys.stderr)
        return 0


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"Port {port} on {host} is in use (another serve-local?); pass --port with another "
                    f"number, or --port 0 for a free one."
                ) from None
            raise ConfigError(f"Cannot listen on {host}:{port} ({exc.strerror}).") from None
