"""Dedup on small planted sets: what must go goes, what must stay stays, whatever the way the texts arrive."""

from __future__ import annotations

import json
import random
import unicodedata

import numpy as np
import pandas as pd
import pytest
from rapidfuzz import fuzz, process

import evol.dedup.index as dedup
from evol.cli.main import main as cli
from evol.dedup.files import dedup_file
from evol.dedup.index import Deduper, Match, dedup_texts
from evol.errors import FatalBackendError, InputError
from evol.llm.embeddings import Embedder
from evol.testing.server import ScriptedServer
from evol.text import _WORD, normalize

from ..conftest import run_cli

TOPICS = [
    "the ocean",
    "a volcano",
    "winter mornings",
    "my grandmother's kitchen",
    "the first day of school",
    "a lost umbrella",
    "electric trains",
    "the Moon landing",
    "a quiet library",
    "autumn leaves",
    "a broken violin",
    "street markets in Hanoi",
]
FILLERS = ["please", "also", "really", "now", "briefly"]


def planted(seed: int = 3) -> tuple[list[str], list[str | None]]:
    """Distinct instructions and one-word-longer variants of some, shuffled; ``origin[i]`` is a variant's base text."""
    rng = random.Random(seed)
    verbs = ["Write", "Explain", "Summarize", "Plan", "Compare", "Describe"]
    things = ["a haiku", "the causes", "a budget", "three arguments", "a timeline", "the trade-offs"]
    bases = list(
        dict.fromkeys(
            f"{rng.choice(verbs)} {rng.choice(things)} about {topic} for {who}, {how}."
            for topic in TOPICS
            for who, how in [
                ("children", "in simple words"),
                ("engineers", "with numbers"),
                ("tourists", "as a short list"),
                ("chefs", "in two paragraphs"),
            ]
        )
    )
    items: list[tuple[str, str | None]] = [(b, None) for b in bases]
    for base in bases[::3]:
        words = base.split()
        words.insert(rng.randrange(1, len(words)), rng.choice(FILLERS))
        items.append((" ".join(words), base))
    rng.shuffle(items)
    return [t for t, _ in items], [o for _, o in items]


def quadratic(texts: list[str], threshold: float, scorer=fuzz.ratio) -> list[int | None]:
    """The reference: each text against every text kept before it, exhaustively."""
    kept: list[int] = []
    out: list[int | None] = []
    for i, text in enumerate(texts):
        norm = normalize(text)
        best = (
            process.extractOne(
                norm, [normalize(texts[k]) for k in kept], scorer=scorer, score_cutoff=round(threshold * 100, 9)
            )
            if kept
            else None
        )
        out.append(kept[best[2]] if best else None)
        if best is None:
            kept.append(i)
    return out


# --- the library ------------------------------------------------------------------------------------


def test_planted_near_duplicates_are_removed_and_point_at_their_original():
    texts, origin = planted()
    result = dedup_texts([str(i) for i in range(len(texts))], texts, threshold=0.9)
    pairs = {(texts.index(base), i) for i, base in enumerate(origin) if base is not None}
    for i, j in pairs:  # whichever of base and variant comes second goes, pointing at the first
        first, second = min(i, j), max(i, j)
        assert result[first] is None
        assert result[second] is not None and result[second].rule == "near_duplicate"
        assert result[second].duplicate_of == str(first) and 0.9 <= result[second].score < 1
    assert sum(m is not None for m in result) == len(pairs)  # and nothing else: the distinct ones stay


def test_decisions_match_the_exhaustive_quadratic_search():
    texts, _ = planted()
    result = dedup_texts([str(i) for i in range(len(texts))], texts, threshold=0.9)
    assert [None if m is None else int(m.duplicate_of) for m in result] == quadratic(texts, 0.9)


def test_distinct_instructions_sharing_a_template_are_kept_at_a_strict_threshold():
    texts = [f"Write a poem about {topic}." for topic in TOPICS]
    assert dedup_texts([str(i) for i in range(len(texts))], texts, threshold=0.95) == [None] * len(texts)
    # the same template at a lax threshold does collapse: the candidate search is not what keeps them
    lax = dedup_texts([str(i) for i in range(len(texts))], texts, threshold=0.7)
    assert any(m is not None for m in lax)
    assert lax == [
        None if d is None else Match("near_duplicate", str(d), lax[i].score)
        for i, d in enumerate(quadratic(texts, 0.7))
    ]


def test_normalize_of_ascii_text_takes_the_same_words_as_the_unicode_way():
    # normalize reads ASCII text without an apostrophe on a faster path: it must find the very words the regex does
    rnd = random.Random(7)
    alphabet = [chr(c) for c in range(128)] + list("aZ9_ '") * 20
    for _ in range(20_000):
        text = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 24)))
        assert normalize(text) == " ".join(_WORD.findall(unicodedata.normalize("NFKC", text).casefold())), repr(text)


def test_exact_duplicates_after_case_punctuation_and_whitespace_changes():
    texts = [
        "Write a poem about the ocean.",
        "  write A POEM about   the ocean!!",
        "Write a poem, about the ocean?",
        "Write a poem about the sea.",
    ]
    result = dedup_texts(["a", "b", "c", "d"], texts)
    assert result[0] is None
    assert result[1] == Match("exact_duplicate", "a", 1.0)
    assert result[2] == Match("exact_duplicate", "a", 1.0)
    assert result[3] is None or result[3].rule == "near_duplicate"


def test_incremental_check_and_add_equals_one_shot_across_chunks(monkeypatch):
    monkeypatch.setattr(dedup, "CHUNK", 7)  # many chunks, so the prefetching worker is exercised
    texts, _ = planted()
    texts += [t.upper() for t in texts[:10]] + ["", "!!!", "x"]
    ids = [f"r{i}" for i in range(len(texts))]
    one_shot = Deduper(0.9).dedup(ids, texts)

    incremental = Deduper(0.9)
    stepwise = []
    for id, text in zip(ids, texts, strict=True):
        match = incremental.check(text)
        if match is None:
            incremental.add(id, text)
        stepwise.append(match)
    assert stepwise == one_shot
    assert len(incremental) == sum(m is None for m in one_shot)

    # later batches against what earlier batches kept, as rounds or scheduled runs do
    split = Deduper(0.9)
    assert split.dedup(ids[:40], texts[:40]) + split.dedup(ids[40:], texts[40:]) == one_shot


@pytest.mark.parametrize("fresh_keys", [1, 24 * 5, 1 << 18])
def test_band_keys_merged_into_the_sorted_arrays_find_the_same_duplicates(monkeypatch, fresh_keys):
    # 1: every text's keys go to the arrays at once; 120: a merge every five texts, with keys shared across
    # the dict and the arrays; the default: everything stays in the dict
    monkeypatch.setattr(dedup, "_FRESH_KEYS", fresh_keys)
    texts, _ = planted()
    ids = [str(i) for i in range(len(texts))]
    deduper = Deduper(0.9)
    result = deduper.dedup(ids, texts)
    assert [None if m is None else int(m.duplicate_of) for m in result] == quadratic(texts, 0.9)
    assert any(m is not None and m.rule == "near_duplicate" for m in result)
    if fresh_keys < 1 << 18:
        assert deduper._keys.size > 0 and np.all(deduper._keys[:-1] <= deduper._keys[1:])


def test_reordered_words_need_an_orderless_scorer():
    texts = ["list the planets of the solar system by size", "by size list the planets of the solar system"]
    assert dedup_texts(["a", "b"], texts, threshold=0.95, scorer="ratio")[1] is None
    assert dedup_texts(["a", "b"], texts, threshold=0.95, scorer="token_sort_ratio")[1] == Match(
        "near_duplicate", "a", 1.0
    )


def test_instruction_plus_output_is_up_to_the_caller():
    same_q = ["What is 2+2?\nFour.", "What is 2+2?\nThe answer depends on the base you count in, so let us see."]
    assert dedup_texts(["a", "b"], same_q)[1] is None
    assert dedup_texts(["a", "b"], [t.split("\n")[0] for t in same_q])[1] == Match("exact_duplicate", "a", 1.0)


def test_exact_only_and_options_are_checked():
    d = Deduper(0.9, "ratio", exact=True, near=False)
    d.add("a", "Write a poem about the ocean.")
    assert d.check("Write a poem about the oceans.") is None
    assert d.check("write a poem about the ocean") == Match("exact_duplicate", "a", 1.0)
    with pytest.raises(ValueError):
        Deduper(1.5)
    with pytest.raises(ValueError):
        Deduper(0.9, "levenshtein")


LONG = (
    "Write a detailed travel guide for a first-time visitor to Lisbon in late autumn, covering the best "
    "neighbourhoods to stay in, how to use the trams and the metro, which museums open on Mondays, where to eat "
    "grilled sardines away from the tourist crowds, a realistic daily budget in euros, and three day trips that "
    "can be done by train, with the travel time for each one and what to pack for the rain, plus a note on "
    "which viewpoints are worth the climb at sunset and which are not."
)


def test_a_text_is_no_near_duplicate_of_its_own_lineage_but_exact_repeats_and_other_lineages_count():
    deeper = LONG[:-1] + ", and a short list of phrases in Portuguese for ordering food and asking the way."
    deepest = deeper[:-1] + " Keep the whole guide under 900 words."
    assert len(LONG) >= 450 and fuzz.ratio(normalize(LONG), normalize(deeper)) >= 90  # the case that was lost
    d = Deduper(0.9)
    d.add("s1", LONG, "s1")
    assert d.check(deeper, "s1") is None  # its own seed
    d.add("s1.r1", deeper, "s1")
    assert d.check(deepest, "s1") is None  # its parent and grandparent
    # an exact repeat of an ancestor is still a duplicate, of the earliest copy
    assert d.check(LONG.upper(), "s1") == Match("exact_duplicate", "s1", 1.0)
    # another lineage's near copy is a near-duplicate; so is a text with no lineage
    assert d.check(deepest, "s2").rule == "near_duplicate"
    assert d.check(deepest).duplicate_of in ("s1", "s1.r1")
    # a lineage nothing kept belongs to exempts nothing
    assert d.check(deepest, "s9").rule == "near_duplicate"


def test_lineages_in_a_batch_equal_one_at_a_time_and_are_checked():
    texts = [LONG, LONG[:-1] + " in spring.", LONG[:-1] + " in summer.", LONG.lower()]
    lineages = ["a", "a", "b", "b"]
    ids = ["a", "a.r1", "b", "b.r1"]
    batch = Deduper(0.9).dedup(ids, texts, lineages)
    one = Deduper(0.9)
    stepwise = []
    for id, text, lineage in zip(ids, texts, lineages, strict=True):
        match = one.check(text, lineage)
        if match is None:
            one.add(id, text, lineage)
        stepwise.append(match)
    assert batch == stepwise
    assert batch[0] is None and batch[1] is None  # its own lineage's near copy
    assert batch[2].rule == "near_duplicate" and batch[3] == Match("exact_duplicate", "a", 1.0)
    with pytest.raises(ValueError):
        Deduper(0.9).dedup(ids, texts, lineages[:2])


def test_short_texts_and_shingles_longer_than_the_text():
    texts = ["Hi", "hi!", "Hey", "A", "b"]
    result = dedup_texts(list("abcde"), texts, threshold=0.9, shingle=8)
    assert result == [None, Match("exact_duplicate", "a", 1.0), None, None, None]


# --- semantic dedup against a small embeddings server ----------------------------------------------


@pytest.fixture
def embeddings_url():
    with ScriptedServer() as srv:  # its /v1/embeddings answers with hashed bag-of-words vectors
        yield srv.base_url, srv.embedding_requests


def test_semantic_duplicates_through_an_embeddings_endpoint(embeddings_url):
    url, requests = embeddings_url
    texts = ["cats chase mice in the old barn", "in the old barn mice chase cats", "dogs bark at the mail carrier"]
    embed = Embedder(url, "bag-of-words", batch=2)
    result = Deduper(0.9, embed=embed, cosine=0.99).dedup(["a", "b", "c"], texts)
    assert result[0] is None and result[2] is None
    assert result[1].rule == "semantic_duplicate" and result[1].duplicate_of == "a" and result[1].score >= 0.99
    assert {r["model"] for r in requests} == {"bag-of-words"} and max(len(r["input"]) for r in requests) <= 2
    # off by default: the same texts stay
    assert dedup_texts(["a", "b", "c"], texts) == [None, None, None]
    # nor is a text a semantic duplicate of its own lineage
    same = Deduper(0.9, embed=embed, cosine=0.99).dedup(["a", "b", "c"], texts, ["x", "x", "y"])
    assert same == [None, None, None]


def test_unreachable_embeddings_endpoint_is_one_sentence():
    with pytest.raises(FatalBackendError, match="Cannot reach the embeddings endpoint"):
        Embedder("http://127.0.0.1:9/v1", "m", timeout=5)(["x"])


# --- the command ------------------------------------------------------------------------------------

RECORDS = [
    {"id": "a", "instruction": "Write a poem about the ocean.", "input": "", "output": "Waves."},
    {"id": "b", "instruction": "write a poem about the OCEAN!", "input": "", "output": "Salt."},
    {"id": "c", "instruction": "Explain how tides work.", "input": "", "output": "The Moon."},
    {"id": "d", "instruction": "Explain how the tides work.", "input": "", "output": "Gravity."},
    {"id": "e", "instruction": "Plan a picnic for six people.", "input": "", "output": "Bread."},
]


def run(capsys, *argv: str) -> tuple[int, dict]:
    code = cli(["dedup", *argv])
    out = capsys.readouterr().out
    return code, json.loads(out) if code == 0 else {}


def removed_log(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_cli_jsonl_keeps_lines_verbatim_and_logs_removals(tmp_path, capsys):
    src = tmp_path / "data.jsonl"
    lines = [json.dumps(r, separators=(",", ":")) for r in RECORDS]
    src.write_text("\n".join(lines) + "\n")
    code, summary = run(capsys, str(src), "--out", str(tmp_path / "clean.jsonl"))
    assert code == 0
    assert (tmp_path / "clean.jsonl").read_text() == "".join(lines[i] + "\n" for i in (0, 2, 4))
    assert summary["kept"] == 3 and summary["exact_duplicate"] == 1 and summary["near_duplicate"] == 1
    log = removed_log(tmp_path / "clean.removed.jsonl")
    assert [(r["row"], r["id"], r["duplicate_of_row"], r["duplicate_of_id"], r["rule"]) for r in log] == [
        (2, "b", 1, "a", "exact_duplicate"),
        (4, "d", 3, "c", "near_duplicate"),
    ]
    assert log[1]["score"] >= 0.9


def test_cli_cuts_lines_where_the_reader_does(tmp_path, capsys):
    # raw U+2028 and U+0085 inside strings (ensure_ascii=False writes them so), a BOM, CRLF and blank lines: the kept
    # lines are the reader's lines, verbatim, and the log's line numbers are the file's
    rows = [
        {**r, "instruction": r["instruction"].replace("work", "work\u2028").replace("ocean", "ocean\x85")}
        for r in RECORDS
    ]
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    src = tmp_path / "data.jsonl"
    src.write_bytes(("\ufeff" + "\r\n".join([lines[0], "", *lines[1:3], "  ", *lines[3:]]) + "\r\n").encode())
    code, summary = run(capsys, str(src), "--out", str(tmp_path / "clean.jsonl"))
    assert code == 0 and summary["rows"] == 5 and summary["kept"] == 3
    assert (tmp_path / "clean.jsonl").read_bytes() == "".join(lines[i] + "\n" for i in (0, 2, 4)).encode()
    log = removed_log(tmp_path / "clean.removed.jsonl")
    assert [(r["row"], r["where"].rsplit(":", 1)[1], r["duplicate_of_row"]) for r in log] == [(2, "3", 1), (4, "6", 3)]

    src = tmp_path / "data.txt"  # a lone CR ends a line too
    src.write_text("Write a poem about the ocean.\rwrite a poem about the OCEAN!\n\nPlan a picnic.\n", newline="")
    code, summary = run(capsys, str(src), "--out", str(tmp_path / "clean.txt"))
    assert code == 0 and summary["kept"] == 2
    assert (tmp_path / "clean.txt").read_text() == "Write a poem about the ocean.\nPlan a picnic.\n"
    assert [r["where"].rsplit(":", 1)[1] for r in removed_log(tmp_path / "clean.removed.jsonl")] == ["2"]


def test_cli_parquet_keeps_its_columns(tmp_path, capsys):
    src = tmp_path / "data.parquet"
    pd.DataFrame(RECORDS).to_parquet(src)
    assert run(capsys, str(src), "--out", str(tmp_path / "clean.parquet"))[0] == 0
    kept = pd.read_parquet(tmp_path / "clean.parquet")
    assert list(kept.columns) == list(RECORDS[0]) and list(kept["id"]) == ["a", "c", "e"]
    assert [r["id"] for r in removed_log(tmp_path / "clean.removed.jsonl")] == ["b", "d"]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_file_read_in_a_child_process_gives_what_one_read_here_does(tmp_path, suffix):
    # large files are read, normalised and signed in a child process (dedup_file's in_child): same rows kept, same log
    rnd = random.Random(3)
    vocab = [f"w{i}" for i in range(400)]
    texts: list[str] = []
    for _ in range(9000):  # three chunks: random sentences, a fifth of them an earlier one with a word changed
        words = rnd.choice(texts).split() if texts and rnd.random() < 0.2 else rnd.choices(vocab, k=10)
        words[rnd.randrange(10)] = rnd.choice(vocab)
        texts.append(" ".join(words))
    rows = [{"id": f"r{i}", "instruction": t, "output": t[:12]} for i, t in enumerate(texts)]
    src = tmp_path / f"data{suffix}"
    if suffix == ".jsonl":
        src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        pd.DataFrame(rows).to_csv(src, index=False)
    outs = {}
    for in_child in (False, True):
        out = tmp_path / str(in_child) / f"kept{suffix}"
        summary = dedup_file(src, out, Deduper(0.8), compare="instruction+output", in_child=in_child)
        outs[in_child] = summary["kept"], out.read_bytes(), (out.parent / "kept.removed.jsonl").read_bytes()
    assert outs[True] == outs[False]
    assert 0 < outs[True][0] < len(rows)


def test_a_bad_row_read_in_a_child_process_is_the_same_one_sentence(tmp_path):
    src = tmp_path / "data.jsonl"
    src.write_text("".join(f'{{"instruction": "task number {i}"}}\n' for i in range(5000)) + '{"instruction": \n')
    with pytest.raises(InputError, match=r"data.jsonl:5001 is not valid JSON"):
        dedup_file(src, tmp_path / "o.jsonl", Deduper(), in_child=True)
    assert not (tmp_path / "o.jsonl").exists()


def test_cli_json_and_csv_keep_their_shape(tmp_path, capsys):
    src = tmp_path / "data.json"
    src.write_text(json.dumps({"data": RECORDS}))
    assert run(capsys, str(src), "--out", str(tmp_path / "out" / "clean.json"))[0] == 0
    assert json.loads((tmp_path / "out" / "clean.json").read_text()) == {"data": [RECORDS[i] for i in (0, 2, 4)]}

    src = tmp_path / "data.csv"
    pd.DataFrame(RECORDS).to_csv(src, index=False)
    assert run(capsys, str(src), "--out", str(tmp_path / "clean.csv"), "--threshold", "0.99")[0] == 0
    kept = pd.read_csv(tmp_path / "clean.csv", dtype=str, keep_default_na=False)
    assert list(kept.columns) == list(RECORDS[0]) and list(kept["id"]) == ["a", "c", "d", "e"]
    assert [r["rule"] for r in removed_log(tmp_path / "clean.removed.jsonl")] == ["exact_duplicate"]


def test_cli_compares_instruction_and_output_when_asked(tmp_path, capsys):
    src = tmp_path / "data.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    _, summary = run(capsys, str(src), "--out", str(tmp_path / "o.jsonl"), "--compare", "instruction+output")
    assert summary["kept"] == 5  # the answers differ, so no pair is a duplicate any more


@pytest.mark.parametrize(
    "content, args, code, fragment",
    [
        (None, [], 3, "does not exist"),
        ('{"instruction": "a"}\n{"instruction": \n', [], 3, "data.jsonl:2 is not valid JSON"),
        ('{"prompt_text": "a"}\n', [], 3, "has no instruction field"),
        ('{"instruction": "a"}\n', ["--threshold", "90"], 2, "between 0 and 1"),
    ],
)
@pytest.mark.slow
def test_cli_bad_input_is_one_sentence_without_traceback(tmp_path, content, args, code, fragment):
    src = tmp_path / "data.jsonl"
    if content is not None:
        src.write_text(content)
    proc = run_cli("dedup", str(src), "--out", str(tmp_path / "o.jsonl"), *args)
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("evol: error: ") and fragment in proc.stderr
    assert not (tmp_path / "o.jsonl").exists()


def test_cli_refuses_to_change_the_format(tmp_path, capsys):
    src = tmp_path / "data.jsonl"
    src.write_text('{"instruction": "a"}\n')
    assert cli(["dedup", str(src), "--out", str(tmp_path / "o.csv")]) == 2
    assert "--out must end in .jsonl" in capsys.readouterr().err


def test_check_settled_sees_only_what_was_kept_when_the_round_began():
    # a run's items look their text up before it is answered while the round settles: what they may be found to
    # repeat must not depend on how far settling had got, or a resumed run pays for other calls
    d = Deduper(0.9)
    d.add("a", "Write a haiku about the autumn moon over a quiet lake.")
    d.begin_round()
    d.add("b", "Explain how a bicycle gear train trades force for speed.")
    again = "Explain how a bicycle gear train trades force for speed!"
    assert d.check_settled(again) is None  # kept after the round began
    assert d.check(again) is not None  # ... which settling itself sees
    assert d.check_settled("Write a haiku about the autumn moon over a quiet lake.").duplicate_of == "a"
    assert d.check_settled("Write a haiku about the autumn moon above a quiet lake.").rule == "near_duplicate"
    d.begin_round()
    assert d.check_settled(again).duplicate_of == "b"
