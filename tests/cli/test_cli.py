"""The command line as a user meets it: bad input gets one sentence and a non-zero exit, never a traceback."""

import subprocess
import sys

import pytest

from evol.llm.endpoint import free_port
from evol.testing.server import ScriptedServer

from ..conftest import SEEDS, run_cli

pytestmark = pytest.mark.slow  # every test runs python -m evol in a subprocess (2-9 s each)


def one_sentence(proc, code, *fragments):
    assert proc.returncode == code, proc.stderr
    err = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr
    assert err[-1].startswith("evol: error: ")
    for f in fragments:
        assert f in err[-1]


def test_help_explains_every_option():
    proc = run_cli("run", "--help")
    assert proc.returncode == 0
    for opt in (
        "--seeds",
        "--rounds",
        "--profile",
        "--base-url",
        "--model",
        "--response-model",
        "--out",
        "--include-seeds",
        "--concurrency",
        "--config",
        "--disable-rule",
        "--dedup-threshold",
    ):
        assert opt in proc.stdout


def test_a_command_builds_only_its_own_parser_and_help_lists_every_command():
    names = ("run", "dedup", "export", "optimize", "report", "score", "serve", "serve-local")
    top = run_cli("--help")
    assert top.returncode == 0
    assert all(n in top.stdout for n in names)
    probe = (
        "import sys; from evol.cli.main import build_parser, wanted_command; "
        "build_parser(wanted_command(sys.argv[1:])); print(sorted(m for m in sys.modules if m.startswith('evol.cli.commands.')))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, "-q", "run", "--seeds", "s.jsonl"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    loaded = proc.stdout
    assert "evol.cli.commands.run" in loaded
    assert not any(f"evol.cli.commands.{n.replace('-', '_')}'" in loaded for n in names if n != "run")
    nope = run_cli("nope")  # an unknown command: argparse's usage error, which lists them all
    assert nope.returncode == 2 and "serve-local" in nope.stderr


def test_missing_seed_file(tmp_path):
    one_sentence(
        run_cli("run", "--seeds", str(tmp_path / "nope.jsonl"), "--base-url", "http://127.0.0.1:9/v1"),
        3,
        "nope.jsonl does not exist",
    )


def test_malformed_jsonl_names_the_line(tmp_path):
    f = tmp_path / "s.jsonl"
    f.write_text('{"instruction": "a"}\n{"instruction": "b"\n')
    one_sentence(
        run_cli("run", "--seeds", str(f), "--base-url", "http://127.0.0.1:9/v1"), 3, "s.jsonl:2 is not valid JSON"
    )


def test_no_seeds_option():
    one_sentence(run_cli("run"), 2, "--seeds")


def test_unknown_config_key(tmp_path):
    cfg = tmp_path / "evol.toml"
    cfg.write_text(f'seeds = "{SEEDS}"\nroundz = 3\n')
    one_sentence(run_cli("run", "--config", str(cfg)), 2, "unknown option 'roundz'")


def test_unreachable_endpoint_stops_before_any_work(tmp_path):
    proc = run_cli(
        "run", "--seeds", str(SEEDS), "--base-url", f"http://127.0.0.1:{free_port()}/v1", "--out", str(tmp_path / "o")
    )
    one_sentence(proc, 4, "Cannot reach")


def test_a_wrong_key_stops_the_run_with_one_sentence_and_never_shows_the_key(tmp_path):
    key = "sk-evolcli-TOPSECRET987654321"
    with ScriptedServer(require_key="sk-other") as srv:
        proc = run_cli(
            "run",
            "--seeds",
            str(SEEDS),
            "--base-url",
            srv.base_url,
            "--out",
            str(tmp_path / "o"),
            env={"EVOL_API_KEY": key},
        )
    one_sentence(proc, 4, "401")
    assert key not in proc.stderr + proc.stdout and "TOPSECRET" not in proc.stderr


def test_unknown_profile_and_bad_rule():
    one_sentence(run_cli("run", "--seeds", str(SEEDS), "--profile", "poetry"), 2, "Unknown profile 'poetry'")
    proc = run_cli("run", "--seeds", str(SEEDS), "--disable-rule", "nope")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_a_fatal_error_mid_run_keeps_what_was_done(tmp_path):
    count = {"n": 0}

    def script(req):
        count["n"] += 1
        from evol.testing.server import Reply

        return (
            Reply(status=401, content="key revoked")
            if count["n"] > 30
            else Reply(content="Not Equal " + "x " * 5 + str(count["n"]))
        )

    with ScriptedServer(script) as srv:
        proc = run_cli(
            "run",
            "--seeds",
            str(SEEDS),
            "--base-url",
            srv.base_url,
            "--out",
            str(tmp_path / "o"),
            "--rounds",
            "1",
            "--concurrency",
            "1",
        )
    one_sentence(proc, 4, "401")
    import json

    m = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert m["status"] == "stopped" and "401" in m["reason"]
    assert m["usage"]["calls"]  # the answers that came back are counted (and cached for the resume)
