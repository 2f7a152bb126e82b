"""evol run --dry-run: the estimate of calls, tokens, cost and time before paying, against what the run then made."""

import json
from pathlib import Path

import pytest

from evol.seeds import load_seeds
from evol.testing.server import ScriptedServer

from ..conftest import run_cli
from ..realistic import SHIPPED, RealisticModel, long_seeds


def _seeds(tmp_path, n: int = 200) -> tuple[str, list[str]]:
    """``n`` seeds, one a line: the shipped ones, then long ones run together from them."""
    shipped = [s.instruction for s in load_seeds(SHIPPED).seeds]
    texts = [" ".join(t.split()) for t in [*shipped, *long_seeds([300 + 20 * i for i in range(max(0, n - 175))])]]
    path = tmp_path / "seeds.txt"
    path.write_text("\n".join(texts[:n]) + "\n", encoding="utf-8")
    return str(path), [s.instruction for s in load_seeds(path).seeds]


def _made(out) -> tuple[int, int, dict]:
    m = json.loads((out / "manifest.json").read_text())
    usage = m["usage"]
    paid = sum(usage["calls"].values()) - sum(usage["calls_from_cache"].values())
    return paid, usage["tokens_total"]["prompt_tokens"] + usage["tokens_total"]["completion_tokens"], m


@pytest.mark.slow
def test_a_probe_of_20_seeds_estimates_a_3_round_run_over_200_within_15_percent_of_calls_and_25_of_tokens(tmp_path):
    seeds, texts = _seeds(tmp_path)
    out = tmp_path / "run"

    def args(srv):
        return ("run", f"--seeds={seeds}", "--rounds=3", "--seed=3", f"--base-url={srv.base_url}", f"--out={out}")

    with ScriptedServer(RealisticModel(texts)) as srv:
        r = run_cli(*args(srv), "--dry-run", "--probe=20")
        assert r.returncode == 0, r.stderr
        probed = srv.chat_count()
    est = json.loads(r.stdout)
    assert 20 <= probed <= 3 * 20 * 1.5  # the probe: one round of 20 seeds, paid, and nothing more
    assert "probe of 20 seeds" in est["source"] and est["rounds"] == [1, 2, 3]
    assert not (out / "manifest.json").exists()  # the run itself has not started
    with ScriptedServer(RealisticModel(texts)) as srv:  # a fresh model: the probe's calls do not shift its script
        r = run_cli(*args(srv))
        assert r.returncode == 0, r.stderr
    calls, tokens, manifest = _made(out)
    assert abs(calls / est["calls"]["expected"] - 1) <= 0.15, (calls, est["calls"])
    assert abs(tokens / est["tokens"]["expected"] - 1) <= 0.25, (tokens, est["tokens"])
    for stage, made in manifest["usage"]["calls"].items():  # each stage's calls inside its stated range
        span = est["by_stage"][stage]["calls"]
        assert span["low"] <= made <= span["high"], (stage, made, span)


def test_a_dry_run_pays_for_nothing_and_states_a_range_per_stage_and_round(tmp_path):
    seeds, _ = _seeds(tmp_path, 30)
    with ScriptedServer() as srv:
        r = run_cli(
            "run",
            f"--seeds={seeds}",
            "--rounds=2",
            f"--base-url={srv.base_url}",
            "--model=gpt-4o-mini",
            f"--out={tmp_path / 'run'}",
            "--dry-run",
        )
        assert r.returncode == 0, r.stderr
        assert srv.chat_count() == 0 and not srv.requests
    est = json.loads(r.stdout)
    assert est["source"] == "the method's defaults" and est["rounds"] == [1, 2]
    assert est["by_stage"]["evolve"]["calls"]["expected"] == 60  # one evolution per seed per round, exactly
    for key in ("calls", "tokens", "cost_usd", "seconds"):
        assert est[key]["low"] <= est[key]["expected"] <= est[key]["high"]
    assert est["calls"]["low"] < est["calls"]["high"] and est["cost_usd"]["expected"] > 0  # gpt-4o-mini is priced
    assert set(est["calls_by_round"]) == {"0", "1", "2"}  # round 0: the seeds answered for the dataset
    assert "estimate of rounds 1-2" in r.stderr and not (tmp_path / "run").exists()


def test_dry_run_on_the_embedded_default_estimates_that_model_at_the_settings_the_run_would_get(tmp_path):
    from evol.llm.local import setup

    seeds, _ = _seeds(tmp_path, 10)
    common = ("run", f"--seeds={seeds}", "--rounds=2", f"--out={tmp_path / 'run'}", "--dry-run")
    r = run_cli(*common)  # no key, no endpoint: the embedded model, which nothing starts for an estimate
    assert r.returncode == 0, r.stderr
    est = json.loads(r.stdout)
    assert est["source"] == "measurements of the embedded model"
    assert est["unpriced_models"] == [Path(setup.DEFAULT_MODEL_FILE).stem] and est["cost_usd"]["high"] == 0
    # most of a 135M model's evolutions fail the checks: far fewer judge and answer calls than a capable model's
    assert est["by_stage"]["judge"]["calls"]["expected"] < 0.3 * est["by_stage"]["evolve"]["calls"]["expected"]
    assert f"with up to {setup.LOCAL_CONCURRENCY * setup.local_replicas()} requests in flight" in r.stderr
    assert "backend:" not in r.stderr and not (tmp_path / "run").exists()  # no server was started

    # the user's own GGUF file is not the model those rates were measured on
    gguf = tmp_path / "mine.gguf"
    gguf.write_bytes(b"GGUF" + bytes(60))
    r = run_cli(*common, f"--model-path={gguf}")
    assert r.returncode == 0, r.stderr
    est = json.loads(r.stdout)
    assert est["source"] == "the method's defaults" and est["unpriced_models"] == ["mine"]


@pytest.mark.slow
def test_a_partly_done_folder_estimates_only_the_rounds_left_from_the_rounds_it_finished(tmp_path):
    seeds, texts = _seeds(tmp_path, 120)
    out = tmp_path / "run"
    with ScriptedServer(RealisticModel(texts)) as srv:
        base = ("run", f"--seeds={seeds}", "--seed=3", f"--base-url={srv.base_url}", f"--out={out}")
        assert run_cli(*base, "--rounds=1").returncode == 0
        r = run_cli(*base, "--rounds=3", "--dry-run")
        assert r.returncode == 0, r.stderr
        est = json.loads(r.stdout)
        assert est["rounds"] == [2, 3] and "1 finished round" in est["source"]
        before = srv.chat_count()
        assert run_cli(*base, "--rounds=3").returncode == 0
        made = srv.chat_count() - before  # round 1 came from the cache
    assert abs(made / est["calls"]["expected"] - 1) <= 0.15, (made, est["calls"])
    calls, _, manifest = _made(out)
    assert calls == made
    assert manifest["estimate"]["rounds"] == [2, 3]  # the run's own estimate, made before its first call


def test_the_manifest_holds_the_estimate_and_the_summary_sets_it_against_the_calls_made(tmp_path):
    seeds, texts = _seeds(tmp_path, 12)
    with ScriptedServer(RealisticModel(texts)) as srv:
        r = run_cli("run", f"--seeds={seeds}", "--rounds=1", f"--base-url={srv.base_url}", f"--out={tmp_path / 'run'}")
        assert r.returncode == 0, r.stderr
    _, _, manifest = _made(tmp_path / "run")
    est = manifest["estimate"]
    assert est["source"] == "the method's defaults" and est["by_stage"]["evolve"]["calls"]["expected"] == 12
    assert "estimate    calls" in r.stderr and "made" in r.stderr


def test_probe_without_dry_run_is_one_sentence(tmp_path):
    seeds, _ = _seeds(tmp_path, 3)
    r = run_cli("run", f"--seeds={seeds}", "--probe=5", "--base-url=http://127.0.0.1:9/v1")
    assert r.returncode != 0 and "--probe N goes with --dry-run" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("method", ["evol", "direct"])
def test_score_dry_run_counts_the_calls_not_in_the_cache_and_sends_none(tmp_path, method):
    seeds, texts = _seeds(tmp_path, 12)
    out = tmp_path / "run"
    with ScriptedServer(RealisticModel(texts)) as srv:
        assert (
            run_cli("run", f"--seeds={seeds}", "--rounds=1", f"--base-url={srv.base_url}", f"--out={out}").returncode
            == 0
        )
    rows = json.loads((out / "manifest.json").read_text())["counts"]["dataset_rows"]
    with ScriptedServer(lambda request: "Score: 7. Clear and specific.") as srv:
        score = ("score", str(out), f"--base-url={srv.base_url}", f"--method={method}")
        r = run_cli(*score, "--dry-run")
        assert r.returncode == 0, r.stderr
        assert srv.chat_count() == 0
        est = json.loads(r.stdout)
        # direct: complexity and quality of every row (the 12 seeds and their kept evolutions); evol: of every
        # lineage, a seed and its evolution side by side
        assert est["calls"]["expected"] == (2 * rows if method == "direct" else 2 * 12)
        assert run_cli(*score).returncode == 0
        paid = srv.chat_count()
        again = json.loads(run_cli(*score, "--dry-run").stdout)
    assert paid == est["calls"]["expected"] and again["calls"]["expected"] == 0  # what was scored is cached now
