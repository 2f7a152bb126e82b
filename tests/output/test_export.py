"""``python -m evol export``: every format loads with the library a trainer uses, with the right rows."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from evol.cli.main import main as cli
from evol.errors import ConfigError, InputError
from evol.output.export import ExportOptions, export, split
from evol.output.rows import RowFilter, pick_rows
from evol.rundir.reader import load_run
from evol.testing.replies import GIVEN, given_prompt
from evol.testing.server import Reply, ScriptedServer, last_user

pytestmark = pytest.mark.slow  # every test reads a scripted run made in a subprocess (19 s) or runs the CLI

ROOT = Path(__file__).resolve().parents[2]
TWIN_TEXT = "Compare how the Moon and the Sun each pull on the oceans of Earth, and say which pull is stronger."
VOCAB = [
    "harbor",
    "lantern",
    "orbit",
    "meadow",
    "quartz",
    "violin",
    "ember",
    "falcon",
    "orchard",
    "granite",
    "saffron",
    "tundra",
    "compass",
    "velvet",
    "glacier",
    "bramble",
    "cinder",
    "lagoon",
    "mosaic",
    "nectar",
    "obsidian",
    "pylon",
    "rampart",
    "kettle",
]

# one seed per behaviour the scripted model plays (see ``llm`` below)
SEEDS = [
    "Write a short poem about the sea.",  # kept every round
    "Explain how a bicycle gear system works.",  # kept every round
    "List three ways to save water at home.",  # kept every round
    "Describe what happens inside a volcano before it erupts.",  # the answer is always "Sorry": eliminated
    "Suggest an opening strategy for a beginner chess player.",  # the judge says "Equal": eliminated
    "Give one example of how tides shape a coastline.",  # round 1 turns into TWIN_TEXT, kept
    "Name a surprising fact about ocean tides.",  # also turns into TWIN_TEXT: a duplicate every round
    "Explain why a strong password matters.",  # the server refuses every evolution: failed
    "Tell a story about a lighthouse keeper.",  # kept in round 1, then leaks the template marker
]
ROUNDS = 3
# what the script above implies for a run over SEEDS with --include-seeds
EXPECTED = {"kept": 13, "eliminated": 8, "duplicate": 3, "failed": 3, "seed_records": 8}


def words_for(key: str, n: int) -> str:
    out = []
    for i in range(n):
        h = hashlib.sha256(f"{key}:{i}".encode()).digest()
        out.append(VOCAB[h[0] % len(VOCAB)])
    return " ".join(out)


def evolve(parent: str) -> str:
    """Each round adds a clause about half as long as the text, so no round is a near duplicate of the last."""
    n = max(8, len(parent.split()) // 2)
    return f"{parent} Moreover, relate it to {words_for(parent, n)}."


def llm(request: dict) -> Reply:
    prompt = last_user(request)
    if GIVEN in prompt:
        parent = given_prompt(prompt)
        if "password" in parent:
            return Reply(status=400, content="this request is not allowed")
        if "tides" in parent:
            return Reply(content=TWIN_TEXT)
        if "lighthouse" in parent and "Moreover" in parent:
            return Reply(content=f"{evolve(parent)} Keep the #Rewritten Prompt# short.")
        return Reply(content=evolve(parent))
    if "First instruction:" in prompt and "Second instruction:" in prompt:
        return Reply(content="Equal" if "chess" in prompt.split("Second instruction:", 1)[1] else "Not Equal")
    if "volcano" in prompt:
        return Reply(content="Sorry, I cannot help with that.")
    n = 30 + 2 * len(prompt.split())
    return Reply(content=f"Here is a careful answer. {words_for('answer:' + prompt, n)}.")


def make_run(out: Path, seeds: list[str], *args: str, rounds: int = ROUNDS) -> Path:
    """A real run of the pipeline against the scripted server, in this process."""
    seed_file = out.parent / f"{out.name}-seeds.jsonl"
    seed_file.write_text("".join(json.dumps({"instruction": s}) + "\n" for s in seeds))
    with ScriptedServer(llm) as srv:
        code = cli(
            [
                "-q",
                "run",
                "--seeds",
                str(seed_file),
                "--rounds",
                str(rounds),
                "--out",
                str(out),
                "--base-url",
                srv.base_url,
                "--concurrency",
                "4",
                *args,
            ]
        )
    assert code == 0
    return out


@pytest.fixture(scope="module")
def run_a(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("runs") / "a", SEEDS, "--include-seeds")


@pytest.fixture(scope="module")
def run_b(tmp_path_factory) -> Path:
    """A code-profile run sharing two seeds with run A: their evolutions are the same texts."""
    seeds = [*SEEDS[:2], "Write a Python function that reverses a list.", "Explain recursion with a short example."]
    return make_run(tmp_path_factory.mktemp("runs") / "b", seeds, "--profile", "code", rounds=2)


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines() if line.strip()]


def hf_datasets():
    """Hugging Face ``datasets``, or a skip (the checkout's own datasets/ folder imports as a namespace package)."""
    mod = pytest.importorskip("datasets")
    if not hasattr(mod, "load_dataset"):
        pytest.skip("Hugging Face datasets is not installed")
    return mod


def do_export(runs: list[Path], out: Path, fmt: str = "alpaca", **kw) -> dict:
    sel = kw.pop("row_filter", RowFilter())
    return export(runs, out, ExportOptions(fmt=fmt, row_filter=sel, **kw))


def test_the_scripted_run_has_every_outcome(run_a):
    counts = json.loads((run_a / "manifest.json").read_text())["counts"]
    assert {k: counts[k] for k in EXPECTED} == EXPECTED
    assert counts["balanced"]


def test_alpaca_loads_with_json_and_matches_the_run(run_a, tmp_path):
    summary = do_export([run_a], tmp_path / "out")
    rows = json.loads((tmp_path / "out" / "train.json").read_text())
    assert rows == json.loads((run_a / "dataset.json").read_text())  # same rows, same order as the run's own file
    assert all(set(r) == {"instruction", "output"} for r in rows)
    assert summary["rows"] == {"train": EXPECTED["seed_records"] + EXPECTED["kept"]}
    assert (tmp_path / "out" / "README.md").is_file()


def test_jsonl_keeps_lineage(run_a, tmp_path):
    do_export([run_a], tmp_path / "out", "jsonl")
    lines = (tmp_path / "out" / "train.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == len(records(run_a))
    assert {r["id"] for r in rows} == {r["id"] for r in records(run_a)}
    assert set(rows[0]) == {"instruction", "output", "id", "seed_id", "round", "operation", "run_id"}


def test_sharegpt_conversations(run_a, tmp_path):
    do_export([run_a], tmp_path / "out", "sharegpt", system="You are helpful.")
    rows = json.loads((tmp_path / "out" / "train.json").read_text())
    recs = records(run_a)
    assert len(rows) == len(recs)
    for row, rec in zip(rows, recs, strict=True):
        assert [t["from"] for t in row["conversations"]] == ["system", "human", "gpt"]
        assert row["conversations"][1]["value"] == rec["instruction"]
        assert row["conversations"][2]["value"] == rec["output"]


def test_openai_chat_messages(run_a, tmp_path):
    do_export([run_a], tmp_path / "out", "openai-chat")
    rows = [json.loads(line) for line in (tmp_path / "out" / "train.jsonl").read_text().splitlines()]
    assert len(rows) == len(records(run_a))
    for row in rows:
        assert set(row) == {"messages"}
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
        assert all(isinstance(m["content"], str) and m["content"] for m in row["messages"])


def test_parquet_loads_with_pandas_and_splits(run_a, tmp_path):
    pd = pytest.importorskip("pandas")
    summary = do_export([run_a], tmp_path / "out", "parquet", val_fraction=0.25, seed=3)
    train = pd.read_parquet(tmp_path / "out" / "train.parquet")
    val = pd.read_parquet(tmp_path / "out" / "validation.parquet")
    assert len(train) + len(val) == len(records(run_a))
    assert summary["rows"] == {"train": len(train), "validation": len(val)}
    assert len(val) > 0 and len(train) > 0
    assert str(train["round"].dtype) == "int64"
    # whole lineages: no seed has rows on both sides
    assert not set(train["seed_id"]) & set(val["seed_id"])


def test_hf_folder_loads_with_datasets(run_a, tmp_path, monkeypatch):
    for var in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(var, "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    out = tmp_path / "out"
    do_export([run_a], out, "hf", val_fraction=0.3)
    card = (out / "README.md").read_text()
    assert card.startswith("---\nconfigs:\n")
    assert "path: data/train-00000-of-00001.parquet" in card and "split: validation" in card
    datasets = hf_datasets()
    ds = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "cache"))
    assert set(ds) == {"train", "validation"}
    assert ds["train"].num_rows + ds["validation"].num_rows == len(records(run_a))
    assert {"instruction", "output", "round", "operation"} <= set(ds["train"].column_names)


@pytest.mark.parametrize("fmt", ["alpaca", "jsonl", "sharegpt", "openai-chat"])
def test_json_formats_load_with_datasets(run_a, tmp_path, monkeypatch, fmt):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    datasets = hf_datasets()
    do_export([run_a], tmp_path / "out", fmt, val_fraction=0.2)
    ds = datasets.load_dataset(str(tmp_path / "out"), cache_dir=str(tmp_path / "cache"))
    assert ds["train"].num_rows + ds["validation"].num_rows == len(records(run_a))


def test_split_is_deterministic_and_seed_dependent(run_a):
    run = load_run(run_a)
    picked = pick_rows([run], RowFilter()).rows
    a = split(picked, 0.3, seed=1)
    assert a == split(picked, 0.3, seed=1)
    assert any(split(picked, 0.3, seed=s)["validation"] != a["validation"] for s in range(2, 8))
    assert split(picked, 0.0, seed=1) == {"train": picked}


def test_selection_by_round_operation_length_and_seeds(run_a, tmp_path):
    recs = records(run_a)
    s = do_export([run_a], tmp_path / "r2", row_filter=RowFilter(rounds=frozenset({2})))
    assert s["rows"]["train"] == sum(r["round"] == 2 for r in recs)
    s = do_export([run_a], tmp_path / "noseeds", row_filter=RowFilter(seeds=False))
    assert s["rows"]["train"] == EXPECTED["kept"]
    s = do_export([run_a], tmp_path / "r1seeds", row_filter=RowFilter(rounds=frozenset({1}), seeds=True))
    assert s["rows"]["train"] == sum(r["round"] in (0, 1) for r in recs)
    op = next(r["operation"] for r in recs if r["round"] > 0)
    s = do_export([run_a], tmp_path / "op", row_filter=RowFilter(operations=frozenset({op}), seeds=False))
    assert s["rows"]["train"] == sum(r["operation"] == op for r in recs)
    s = do_export([run_a], tmp_path / "len", row_filter=RowFilter(min_words=10, max_words=40))
    assert s["rows"]["train"] == sum(10 <= len(r["instruction"].split()) <= 40 for r in recs)
    assert s["left_out"]


def test_merging_runs_drops_duplicates_across_them(run_a, run_b, tmp_path):
    a, b = records(run_a), records(run_b)
    seen = {r["instruction"] for r in a}
    fresh = [r for r in b if r["instruction"] not in seen]
    assert 0 < len(fresh) < len(b)  # the fixture really overlaps
    s = do_export([run_a, run_b], tmp_path / "both", "jsonl")
    rows = [json.loads(line) for line in (tmp_path / "both" / "train.jsonl").read_text().splitlines()]
    assert len(rows) == len(a) + len(fresh) == s["rows"]["train"]
    assert s["left_out"] == {"duplicate across runs": len(b) - len(fresh)}
    assert len({r["instruction"] for r in rows}) == len(rows)
    card = (tmp_path / "both" / "README.md").read_text()
    assert "profile: `general`" in card and "profile: `code`" in card
    s = do_export([run_a, run_b], tmp_path / "code", row_filter=RowFilter(profiles=frozenset({"code"})))
    assert s["rows"]["train"] == len(b)


def test_dataset_card_says_what_made_it(run_a, tmp_path):
    do_export([run_a], tmp_path / "out")
    card = (tmp_path / "out" / "README.md").read_text()
    manifest = json.loads((run_a / "manifest.json").read_text())
    assert "license: other" in card and "## License" in card
    assert "scripted-model" in card
    for name, digest in manifest["prompt_sha256"].items():
        assert f"| {name} | `{digest}` |" in card
    assert f"| Kept | kept | {EXPECTED['kept']} |" in card
    assert "| sorry_short_response | eliminated | 3 |" in card
    assert "| exact_duplicate | duplicate | 3 |" in card
    assert "| backend_error | failed | 3 |" in card


def test_re_export_replaces_its_own_files_only(run_a, tmp_path):
    out = tmp_path / "out"
    do_export([run_a], out, val_fraction=0.3)
    assert (out / "validation.json").is_file()
    do_export([run_a], out)  # no split now: the stale validation file goes
    assert not (out / "validation.json").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "README.md").write_text("mine")
    with pytest.raises(ConfigError, match="other files"):
        do_export([run_a], other)
    assert (other / "README.md").read_text() == "mine"


def test_bad_inputs_are_one_sentence_errors(run_a, tmp_path):
    with pytest.raises(InputError, match="not a folder"):
        do_export([tmp_path / "missing"], tmp_path / "o1")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"no manifest.json"):
        do_export([tmp_path / "empty"], tmp_path / "o2")
    with pytest.raises(ConfigError, match="not an operation"):
        do_export([run_a], tmp_path / "o3", row_filter=RowFilter(operations=frozenset({"nope"})))
    with pytest.raises(ConfigError, match="leaves no rows"):
        do_export([run_a], tmp_path / "o4", row_filter=RowFilter(rounds=frozenset({9})))
    with pytest.raises(ConfigError, match="--val-fraction"):
        do_export([run_a], tmp_path / "o5", val_fraction=1.0)
    with pytest.raises(ConfigError, match="matches none"):
        do_export([run_a], tmp_path / "o6", row_filter=RowFilter(profiles=frozenset({"math"})))


def test_a_bad_record_row_names_its_file_and_line(run_a, tmp_path):
    """records.jsonl and rejected.jsonl are read as the models the run wrote: a row that is broken JSON, or that is
    not such an entry, is an InputError naming the file and the line."""

    def second_row(name: str, **change) -> str:
        row = json.loads((run_a / name).read_text().splitlines()[1])
        return json.dumps({k: v for k, v in (row | change).items() if v is not None})

    cases = [
        ("records.jsonl", '{"id": ', r"records\.jsonl:2 is not valid JSON \(Expecting value\)\.$"),
        (
            "records.jsonl",
            second_row("records.jsonl", seed_index=None),
            r"records\.jsonl:2 is not a row evol run writes \(seed_index: Field required\)\.$",
        ),
        (
            "rejected.jsonl",
            second_row("rejected.jsonl", kind="lost", colour="red"),
            r"rejected\.jsonl:2 is not a row evol run writes \(kind: Input should be .* and 1 more\)\.$",
        ),
    ]
    for n, (name, line, message) in enumerate(cases):
        run = tmp_path / f"run{n}"
        shutil.copytree(run_a, run)
        rows = (run / name).read_text().splitlines()
        (run / name).write_text("\n".join([rows[0], line, *rows[2:]]) + "\n")
        with pytest.raises(InputError, match=message):
            load_run(run)


def test_cli_export_as_a_user_runs_it(run_a, tmp_path):
    out = tmp_path / "cli"
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "EVOL_API_KEY")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "evol",
            "export",
            str(run_a),
            "--format",
            "openai-chat",
            "--out",
            str(out),
            "--val-fraction",
            "0.2",
            "--seed",
            "5",
            "--round",
            "1,2",
            "--no-seeds",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert sum(summary["rows"].values()) == sum(r["round"] in (1, 2) for r in records(run_a))
    proc = subprocess.run(
        [sys.executable, "-m", "evol", "export", str(run_a), "--out", str(tmp_path / "x"), "--round", "one"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("evol: error: --round takes whole numbers")
