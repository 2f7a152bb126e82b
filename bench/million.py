"""A million rows: ``evol dedup`` and ``evol export --select`` from local disk and from object storage.

    python -m bench.million                          # 1,000,000 rows, --select 100000, three runs of each
    python -m bench.million --rows 100000 --repeat 1 # a quicker run

The data is bench.select's synthetic scored run (bench.corpus's instructions: the shipped seeds, templated distinct
instructions and 30 % near-duplicate variants; short answers; a scores.jsonl hashed from the text). ``evol dedup``
reads its records.jsonl as a dataset file; ``evol export --format jsonl --select K`` reads the run folder and its
scores. Each command is the real CLI, ``python -m evol ...``, in a process of its own: its wall time, CPU time and
peak RSS (``os.wait4``'s, or the summed RSS of the command and its children sampled every 0.1 s if larger) are
that command's alone, reading and writing included. The object store is
moto's standalone S3 server on loopback (as tests/s3kit.py uses it) in a process of its own on the same cores;
there each command copies its inputs to a local folder, works there and copies its outputs back
(evol.rundir.store), and the bench checks the outputs are byte for byte those of the local run.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from evol.llm.endpoint import free_port
from tests.s3kit import FAKE_KEYS, NO_METADATA

BUCKET = "evol-bench"


def build(path: Path, rows: int) -> None:
    """The scored run (in a spawned process: its million Score objects never weigh on the commands measured)."""
    from bench.select import make_run

    make_run(path, rows)


def tree_rss_kb(pid: int) -> int:
    """Resident KB of ``pid`` and its children together (/proc): evol dedup reads a large file in a child process,
    and ru_maxrss is the largest single process's peak, not their sum."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            continue  # gone meanwhile
    return total


def measure(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run one command to its end: wall s, CPU s (user + system, its children's included) and peak RSS MB: the
    larger of its own ru_maxrss and the summed RSS of it and its children, sampled every 0.1 s."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            peak[0] = max(peak[0], tree_rss_kb(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    err = proc.stderr.read()  # read before waiting, or a chatty command would block on a full pipe
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait for a pid already reaped
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} exited {proc.returncode}:\n{err.decode(errors='replace')}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "peak_mb": max(usage.ru_maxrss, peak[0]) / 1024}


def measured(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """``measure`` from a fresh process of its own. Linux starts a child's peak RSS at its parent's peak (exec
    keeps the larger of the two), and this process grows past 1.3 GB uploading the run to S3: measured from here
    every command then reported at least that. A freshly spawned launcher is small."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as launcher:
        return launcher.submit(measure, cmd, env).result()


def start_s3() -> tuple[subprocess.Popen, dict[str, str]]:
    """moto's S3 server on a free loopback port, and the environment that reaches it (fake keys, no cloud)."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("AWS_PROFILE", "AWS_SESSION_TOKEN")},
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_DEFAULT_REGION": "us-east-1",
        **NO_METADATA,
        **FAKE_KEYS,
    }
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, env
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise SystemExit("moto's S3 server did not start (is moto[server] installed?)") from None
            time.sleep(0.2)


def s3_filesystem(env: dict[str, str]):
    import s3fs

    return s3fs.S3FileSystem(
        key=env["AWS_ACCESS_KEY_ID"],
        secret=env["AWS_SECRET_ACCESS_KEY"],
        endpoint_url=env["AWS_ENDPOINT_URL"],
        skip_instance_cache=True,
    )


def unplaced(data: bytes) -> list[dict]:
    """A JSONL file's rows without the removal log's "where" (the file's path or URL and line: it names the place)."""
    return [{k: v for k, v in json.loads(line).items() if k != "where"} for line in data.splitlines()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.million", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--k", type=int, default=100_000, help="export --select K")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each command (the median is the figure)")
    parser.add_argument("--no-s3", action="store_true", help="local disk only")
    parser.add_argument("--only", choices=("dedup", "export --select"), help="run one of the two commands")
    args = parser.parse_args(argv)
    evol = [sys.executable, "-m", "evol"]
    with tempfile.TemporaryDirectory(prefix="bench-million-") as tmp:
        run = Path(tmp) / "run"
        start = time.perf_counter()
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            pool.submit(build, run, args.rows).result()
        size = sum(p.stat().st_size for p in run.iterdir()) / 1e6
        print(
            f"synthetic scored run of {args.rows} rows ({size:.0f} MB) written in {time.perf_counter() - start:.1f} s"
        )
        places: dict[str, tuple[str, str, dict[str, str]]] = {"local": (str(run), tmp, dict(os.environ))}
        server, fs = None, None
        if not args.no_s3:
            server, env = start_s3()
            fs = s3_filesystem(env)
            fs.mkdir(BUCKET)
            start = time.perf_counter()
            fs.put(str(run), f"{BUCKET}/run", recursive=True)
            print(f"uploaded to moto's S3 server in {time.perf_counter() - start:.1f} s")
            places["s3"] = (f"s3://{BUCKET}/run", f"s3://{BUCKET}", env)
        try:
            commands = {
                place: {
                    "dedup": [*evol, "dedup", f"{src}/records.jsonl", "--out", f"{dst}/dedup/kept.jsonl"],
                    "export --select": [
                        *evol,
                        "export",
                        src,
                        "--format",
                        "jsonl",
                        "--select",
                        str(args.k),
                        "--out",
                        f"{dst}/export",
                    ],
                }
                for place, (src, dst, _) in places.items()
            }
            figures: dict[tuple[str, str], list[dict[str, float]]] = {}
            for n in range(args.repeat):
                for place, (_, _, env) in places.items():
                    for name, cmd in commands[place].items():
                        if args.only and name != args.only:
                            continue
                        load = os.getloadavg()[0]
                        r = measured(cmd, env) | {"load": load}
                        figures.setdefault((place, name), []).append(r)
                        print(
                            f"run {n + 1} {place:>5} {name:<16} {r['wall']:6.1f} s wall {r['cpu']:6.1f} s CPU "
                            f"{r['peak_mb']:6.0f} MB peak RSS (load average before: {load:.1f})",
                            flush=True,
                        )
            if fs is not None:
                differ = [
                    name
                    for name in ("dedup/kept.jsonl", "dedup/kept.removed.jsonl", "export/train.jsonl")
                    if (Path(tmp) / name).exists()
                    if unplaced((Path(tmp) / name).read_bytes()) != unplaced(fs.cat_file(f"{BUCKET}/{name}"))
                ]
                print(
                    "outputs on S3 the same as the local ones (the removal log's where aside): "
                    + ("NO: " + ", ".join(differ) if differ else "yes")
                )
            for name, what in (("dedup/kept.jsonl", "dedup kept"), ("export/train.jsonl", "export --select chose")):
                if (Path(tmp) / name).exists():
                    lines = (Path(tmp) / name).read_bytes().count(b"\n")
                    print(f"{what} {lines} of {args.rows} rows")
            print(f"\n| command | from | wall (median of {args.repeat}) | CPU | peak RSS | runs (wall s) |")
            print("|---|---|---|---|---|---|")
            for (place, name), rs in figures.items():
                print(
                    f"| `evol {name}` | {place} | {statistics.median(r['wall'] for r in rs):.1f} s | "
                    f"{statistics.median(r['cpu'] for r in rs):.1f} s | "
                    f"{statistics.median(r['peak_mb'] for r in rs):.0f} MB | "
                    f"{', '.join(format(r['wall'], '.1f') for r in rs)} |"
                )
            for place, cmds in commands.items():
                for cmd in cmds.values():
                    print(f"{place}: {shlex.join(cmd[2:])}")
        finally:
            if server is not None:
                server.terminate()
                server.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
