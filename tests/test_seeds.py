import json

import pandas as pd
import pytest

from evol.errors import InputError
from evol.seeds import content_id, load_seeds

from .conftest import SEEDS


def test_self_instruct_seed_tasks_append_their_first_input():
    s = load_seeds(SEEDS)
    assert len(s.seeds) == 175 and not s.skipped
    one = s.seeds[1]
    assert one.id == "seed_task_1"
    assert one.instruction == "What is the relation between the given pairs?\nNight : Day :: Right : Left"
    assert one.output.startswith("The relation")
    assert [x.index for x in s.seeds] == list(range(175))


def test_alpaca_json_sharegpt_and_chat_shapes(tmp_path):
    (tmp_path / "a.json").write_text(
        json.dumps(
            [
                {"instruction": "Add the numbers.", "input": "2, 3", "output": "5"},
                {"instruction": "Say hi.", "input": "", "output": "hi"},
            ]
        )
    )
    a = load_seeds(tmp_path / "a.json").seeds
    assert [x.instruction for x in a] == ["Add the numbers.\n2, 3", "Say hi."]
    assert a[1].id == content_id("Say hi.")
    (tmp_path / "b.jsonl").write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {
                    "conversations": [
                        {"from": "system", "value": "x"},
                        {"from": "human", "value": "Why?"},
                        {"from": "gpt", "value": "Because."},
                    ]
                },
                {"messages": [{"role": "user", "content": "How?"}, {"role": "assistant", "content": "So."}]},
            ]
        )
    )
    b = load_seeds(tmp_path / "b.jsonl").seeds
    assert [(x.instruction, x.output) for x in b] == [("Why?", "Because."), ("How?", "So.")]


def test_csv_parquet_and_text_with_named_fields(tmp_path):
    df = pd.DataFrame({"q": ["One?", "Two?"], "ctx": ["", "data"]})
    df.to_csv(tmp_path / "s.csv", index=False)
    df.to_parquet(tmp_path / "s.parquet")
    for name in ("s.csv", "s.parquet"):
        got = load_seeds(tmp_path / name, instruction_field="q", input_field="ctx").seeds
        assert [x.instruction for x in got] == ["One?", "Two?\ndata"]
    (tmp_path / "t.txt").write_text("First line\n\n  Second line  \n")
    assert [x.instruction for x in load_seeds(tmp_path / "t.txt").seeds] == ["First line", "Second line"]


def test_ids_are_stable_and_bad_rows_are_skipped_with_a_reason(tmp_path):
    (tmp_path / "s.jsonl").write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"instruction": "Keep me."},
                {"instruction": "   "},
                {"instruction": "Keep me."},
                {"instruction": "x" * 50},
            ]
        )
    )
    s = load_seeds(tmp_path / "s.jsonl", max_chars=40)
    assert [x.instruction for x in s.seeds] == ["Keep me."]
    assert [r.rule for r in s.skipped] == ["empty_instruction", "duplicate_seed", "too_long"]
    assert load_seeds(tmp_path / "s.jsonl").seeds[0].id == s.seeds[0].id


def test_limit_and_folder(tmp_path):
    (tmp_path / "b.txt").write_text("b1\nb2\n")
    (tmp_path / "a.txt").write_text("a1\n")
    (tmp_path / "notes.md").write_text("ignored")
    assert [x.instruction for x in load_seeds(tmp_path).seeds] == ["a1", "b1", "b2"]
    assert len(load_seeds(tmp_path, limit=2).seeds) == 2


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("bad.jsonl", '{"instruction": "ok"}\n{"instruction": \n', "bad.jsonl:2 is not valid JSON"),
        ("bad.json", '[{"instruction": "ok"},\n {"instruction" "x"}]', "bad.json:2 is not valid JSON"),
        ("bad.csv", "text,label\nq,a\n", "no instruction field; its fields are: text, label"),
        ("bad.txt", b"fine\n\xff\xfe broken\n", "bad.txt:2 is not valid UTF-8"),
        ("missing.jsonl", None, "does not exist"),
        ("seeds.xlsx", "x", "unknown type"),
    ],
)
def test_bad_input_names_the_file_and_the_problem(tmp_path, name, content, message):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(InputError, match=message.replace("?", r"\?")):
        load_seeds(path)


def test_named_field_missing_lists_the_fields(tmp_path):
    (tmp_path / "s.jsonl").write_text('{"text": "a", "label": 1}\n')
    with pytest.raises(InputError, match="no field 'prompt'; its fields are: text, label"):
        load_seeds(tmp_path / "s.jsonl", instruction_field="prompt")
