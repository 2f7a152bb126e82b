"""Issue #9, hardening: bad input. A whole-file problem stops the command before any call, with one sentence
that names the file (and line) and an exit code; a problem of one seed skips that seed with its reason in
rejected.jsonl and the run goes on."""

from __future__ import annotations

import json
import shutil

import pytest

from evol.prompts import default_prompts_dir
from evol.testing.server import ScriptedServer

from ..conftest import SEEDS
from ..faultmodel import Model, evol_run, manifest, topics, write_seeds

pytestmark = pytest.mark.slow  # every test runs python -m evol in a subprocess (2-6 s each)

UNREACHABLE = "http://127.0.0.1:9/v1"  # if a check came too late, the run would fail on this instead (exit 4)


def one_sentence(proc, code: int, *fragments: str) -> str:
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert proc.returncode == code, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("evol: error: ") and last.endswith((".", ")")), last
    for f in fragments:
        assert f in last, (f, last)
    return last


def _seed_file(name: str, content):
    def make(tmp_path):
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return ["--seeds", str(path)]

    return make


def _config(name: str, text: str):
    def make(tmp_path):
        (tmp_path / name).write_text(text.replace("SEEDS", str(SEEDS)))
        return ["--config", str(tmp_path / name)]

    return make


def _prompts(file: str, text: str):
    def make(tmp_path):
        shutil.copytree(default_prompts_dir(), tmp_path / "prompts")
        (tmp_path / "prompts" / "general" / file).write_text(text)
        return ["--seeds", str(SEEDS), "--prompts-dir", str(tmp_path / "prompts")]

    return make


BAD_INPUT = {
    "malformed JSON": (
        _seed_file("bad.json", '[{"instruction": "ok"},\n {"instruction" "x"}]'),
        3,
        ["bad.json:2 is not valid JSON"],
    ),
    "malformed JSONL": (
        _seed_file("bad.jsonl", '{"instruction": "ok"}\n\n{"instruction": "x",}\n'),
        3,
        ["bad.jsonl:3 is not valid JSON"],
    ),
    "JSONL line that is a number": (
        _seed_file("n.jsonl", '{"instruction": "ok"}\n42\n'),
        3,
        ["n.jsonl:2", "found int"],
    ),
    "JSON object without a list": (
        _seed_file("o.json", '{"instruction": "just one"}'),
        3,
        ["o.json", "expected a list"],
    ),
    "CSV without the instruction column": (
        _seed_file("s.csv", "text,label\nWhat is 2+2?,math\n"),
        3,
        ["s.csv:2 has no instruction field", "its fields are: text, label", "--instruction-field"],
    ),
    "empty CSV": (_seed_file("e.csv", ""), 3, ["e.csv could not be read as a table"]),
    "only empty instructions": (
        _seed_file("e.jsonl", '{"instruction": ""}\n{"instruction": "   "}\n{"instruction": "\\t\\n"}\n'),
        3,
        ["e.jsonl holds no usable seed instructions (3 skipped)"],
    ),
    "empty file": (_seed_file("empty.jsonl", ""), 3, ["empty.jsonl holds no usable seed instructions (0 skipped)"]),
    "non-UTF-8 JSONL": (
        _seed_file("latin1.jsonl", '{"instruction": "ok"}\n{"instruction": "caf\xe9"}\n'.encode("latin-1")),
        3,
        ["latin1.jsonl:2 is not valid UTF-8", "re-save the file as UTF-8"],
    ),
    "non-UTF-8 CSV": (
        _seed_file("latin1.csv", "instruction\nok\ncaf\xe9\n".encode("latin-1")),
        3,
        ["latin1.csv:3 is not valid UTF-8"],
    ),
    "missing seed file": (lambda tmp_path: ["--seeds", str(tmp_path / "nope.jsonl")], 3, ["nope.jsonl does not exist"]),
    "config with an unknown key": (_config("c.toml", 'seeds = "SEEDS"\nroundz = 3\n'), 2, ["unknown option 'roundz'"]),
    "config with a wrong type": (
        _config("c.toml", 'seeds = "SEEDS"\nrounds = "many"\n'),
        2,
        ["option 'rounds': Input should be a valid integer"],
    ),
    "config with a wrong nested type": (
        _config("c.yaml", "seeds: SEEDS\nsampling:\n  temperature: hot\n"),
        2,
        ["option 'sampling.temperature': Input should be a valid number"],
    ),
    "config out of range": (
        _config("c.json", '{"seeds": "SEEDS", "dedup_threshold": 7}'),
        2,
        ["option 'dedup_threshold': Input should be less than or equal to 1"],
    ),
    "config that is not TOML": (_config("c.toml", 'seeds = "SEEDS"\nrounds = = 3\n'), 2, ["c.toml is not valid"]),
    "config holding the key": (
        _config("c.toml", 'seeds = "SEEDS"\napi_key = "sk-in-a-file-123456"\n'),
        2,
        ["holds an api_key", "EVOL_API_KEY"],
    ),
    "template missing its slot": (
        _prompts("mutation.txt", "Write something new.\n"),
        2,
        ["mutation.txt lacks the slot(s) ${instruction}"],
    ),
    "template with an unknown slot": (
        _prompts("deepening.txt", "Deepen ${instruction} for ${audience}.\n"),
        2,
        ["deepening.txt has unknown slot(s) ${audience}"],
    ),
    "template with a stray dollar": (
        _prompts("deepening.txt", "Deepen ${instruction}; it costs $5.\n"),
        2,
        ["deepening.txt has a stray '$'", "'$$'"],
    ),
    "profile that is not TOML": (_prompts("profile.toml", "[operations\n"), 2, ["profile.toml is not valid TOML"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_stops_with_one_sentence_before_any_work(tmp_path, case):
    make, code, fragments = BAD_INPUT[case]
    out = tmp_path / "out"
    proc = evol_run(*make(tmp_path), "--base-url", UNREACHABLE, "--out", str(out))
    last = one_sentence(proc, code, *fragments)
    assert "sk-in-a-file-123456" not in last
    assert not out.exists()  # refused before the run folder, the backend or any spending


class Raw(str):
    """A line written to the seed file as it is."""


def test_per_seed_problems_are_skipped_with_their_reason_and_never_sent(tmp_path):
    """Empty and whitespace-only instructions, duplicates, a seed over the length budget and text that is not
    Unicode: each is skipped with a reason in rejected.jsonl; the good seeds are evolved; the long one never
    reaches the server."""
    long_marker = "ZEBRAFISH-OVER-BUDGET"
    rows = [
        *topics(3),
        {"instruction": ""},
        {"instruction": " \t \n "},
        topics(1)[0],  # the same text again
        {"instruction": "Explain the moon's phases.", "id": "same-id"},
        {"instruction": "Explain the tides.", "id": "same-id"},  # same id, other text: both kept, ids made unique
        {"instruction": f"{long_marker} " + "word " * 6000},  # 30,000 characters, over max_instruction_chars
        Raw('{"instruction": "broken \\ud800 escape"}'),  # valid JSON, but not Unicode text
        {"instruction": "A fine seed with a null\u0000byte and ${instruction} {x} %s in it."},
    ]
    path = tmp_path / "seeds.jsonl"
    path.write_text(
        "".join(
            (r if isinstance(r, Raw) else json.dumps(r if isinstance(r, dict) else {"instruction": r})) + "\n"
            for r in rows
        )
    )
    model = Model()
    with ScriptedServer(model) as srv:
        proc = evol_run(
            "--seeds",
            str(path),
            "--base-url",
            srv.base_url,
            "--out",
            str(tmp_path / "o"),
            "--rounds",
            "1",
            "--concurrency",
            "2",
        )
        requests = [m["content"] for r in srv.requests for m in r["messages"]]
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    skipped = [
        r
        for r in (json.loads(line) for line in (tmp_path / "o" / "rejected.jsonl").read_text().splitlines())
        if r["kind"] == "skipped"
    ]
    assert sorted(r["rule"] for r in skipped) == [
        "duplicate_seed",
        "empty_instruction",
        "empty_instruction",
        "invalid_text",
        "too_long",
    ]
    for r in skipped:
        assert r["detail"].startswith(f"{path}:") and r["stage"] == "load"  # names the file and line
    assert next(r for r in skipped if r["rule"] == "too_long")["detail"].startswith(f"{path}:9: 30")
    assert next(r for r in skipped if r["rule"] == "invalid_text")["detail"].startswith(f"{path}:10:")
    m = manifest(tmp_path / "o")
    assert m["counts"]["seeds"] == 6 and m["counts"]["seeds_skipped"] == 5 and m["status"] == "complete"
    assert m["counts"]["balanced"]
    assert not any(long_marker in text for text in requests)  # skipped means never sent
    assert any("null\u0000byte and ${instruction} {x} %s" in text for text in requests)  # odd but valid: sent verbatim
    records = [json.loads(line) for line in (tmp_path / "o" / "records.jsonl").read_text().splitlines()]
    # every loaded seed is in the dataset (by default, as in WizardLM's) and evolved once; no skipped one is
    evolved = [r for r in records if r["round"] == 1]
    assert len({r["seed_id"] for r in evolved}) == len(evolved) == 6
    assert sorted(r["id"] for r in records if r["round"] == 0) == sorted(r["seed_id"] for r in evolved)


def test_a_folder_of_seeds_with_one_bad_file_names_that_file(tmp_path):
    (tmp_path / "seeds").mkdir()
    write_seeds(tmp_path / "seeds" / "a.jsonl", topics(2))
    (tmp_path / "seeds" / "b.jsonl").write_text('{"instruction": "ok"}\n{oops}\n')
    proc = evol_run("--seeds", str(tmp_path / "seeds"), "--base-url", UNREACHABLE, "--out", str(tmp_path / "o"))
    one_sentence(proc, 3, "b.jsonl:2 is not valid JSON")
