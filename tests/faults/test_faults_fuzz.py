"""Issue #9, hardening: arbitrary text through every stage that touches it. Instructions made of any unicode,
template syntax of every kind (``$x ${x} {x} {{x}} %s <PROMPT> #Given Prompt#``), null bytes, line
separators and lone surrogates (valid only as JSON escapes) are loaded, rendered into every template of
every profile, filtered, deduplicated and stored without an exception, and rendering embeds them verbatim.
(tests/test_prompts.py fuzzes a single template; this covers the shipped ones and the stages around them.)"""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from evol.config import DEFAULT_LEAK_PHRASES, RULES, Sampling
from evol.dedup.index import Deduper
from evol.llm.cache import CallCache
from evol.llm.client import _valid_unicode
from evol.models import Completion, Record, Usage
from evol.prompts import load_profile
from evol.quality import judge_reader
from evol.rules.evolution import check_evolution, script_change
from evol.rules.response import check_response
from evol.rules.wrappers import unwrap
from evol.rundir.files import read_jsonl, write_jsonl
from evol.seeds import load_seeds
from evol.text import normalize

pytestmark = pytest.mark.slow  # hypothesis tries many inputs per test (2-11 s each)

PROFILES = [load_profile(name) for name in ("general", "code", "math")]
LEAKS = sorted({*DEFAULT_LEAK_PHRASES, *(m for p in PROFILES for m in p.leak_markers)})

PIECES = [
    "$x",
    "${x}",
    "$instruction",
    "${instruction}",
    "${first}",
    "${second}",
    "$$",
    "$",
    "$5",
    "${",
    "}",
    "{x}",
    "{instruction}",
    "{0}",
    "{}",
    "{{x}}",
    "{{instruction}}",
    "{{",
    "}}",
    "{%",
    "%}",
    "%s",
    "%(x)s",
    "%d",
    "%",
    "<PROMPT>",
    "</PROMPT>",
    "<|im_start|>",
    "#Given Prompt#",
    "#Given Prompt#:\n",
    "#Rewritten Prompt#:",
    "#Created Prompt#",
    "First instruction:\n",
    "Second instruction:\n",
    "Equal",
    "Not Equal",
    "sorry",
    "\x00",
    "\\",
    "\\n",
    "\\u0000",
    "\n",
    "\r\n",
    "\r",
    "\t",
    "\u2028",
    "\u2029",
    "\x85",
    "\x0b",
    "\x0c",
    "\x1c",
    "\ufeff",
    "\u200b",
    "\u0301",
    "ﬁ",
    "İ",
    "ß",
    "😀",
    "雨の街",
    "مرحبا",
    "\U0010ffff",
    '"',
    "'",
    "`",
]
SURROGATE = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
FRAGMENT = st.one_of(st.sampled_from(PIECES), st.text(max_size=6), SURROGATE)
INSTRUCTION = st.one_of(st.text(max_size=60), st.lists(FRAGMENT, max_size=10).map("".join))

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


@FUZZ
@given(texts=st.lists(INSTRUCTION, min_size=1, max_size=6), ascii_only=st.booleans())
@example(texts=["a\u2028b", "c\x85d", "e\u2029f\x0bg\x1ch", "a\u2028b"], ascii_only=False)  # raw line separators
@example(texts=["x\ud800y", "\ud83d\ude00", "${instruction} \x00 {x} %s", "  "], ascii_only=True)  # lone; a pair
def test_loading_any_text_accounts_for_every_row(texts, ascii_only):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "seeds.jsonl"
        # ensure_ascii=False writes U+2028, U+0085 and friends raw, as records.jsonl does: still one row per line
        path.write_text(
            "".join(json.dumps({"instruction": t}, ensure_ascii=ascii_only) + "\n" for t in texts),
            encoding="utf-8",
            errors="surrogatepass",
        )
        if not ascii_only and any(has_surrogate(t) for t in texts):
            return  # raw surrogates are not UTF-8: that file is refused whole (tests/faults/test_faults_input.py)
        s = load_seeds(path)
    assert len(s.seeds) + len(s.skipped) == len(texts)
    decoded = [json.loads(json.dumps(t)) for t in texts]  # what a JSON reader sees: \\ud83d\\ude00 is one emoji
    expected, seen = [], set()
    for t in decoded:
        if has_surrogate(t):
            continue
        if t.strip() and t.strip() not in seen:
            seen.add(t.strip())
            expected.append(t.strip())
    assert [x.instruction for x in s.seeds] == expected
    assert {r.rule for r in s.skipped} <= {"empty_instruction", "duplicate_seed", "invalid_text"}
    assert sum(r.rule == "invalid_text" for r in s.skipped) == sum(map(has_surrogate, decoded))
    for seed in s.seeds:
        seed.instruction.encode("utf-8")  # everything loaded can be stored and sent


SLOT, SLOT2 = "\ue000slot\ue001", "\ue002slot\ue003"  # private-use characters: in no template


@FUZZ
@given(text=INSTRUCTION, other=INSTRUCTION, seed=st.integers(0, 2**32 - 1))
def test_every_template_of_every_profile_embeds_any_text_verbatim(text, other, seed):
    """Rendered with the text, every prompt is exactly the prompt rendered with a placeholder, the placeholder
    replaced by the text: nothing in the text is read as template syntax, and nothing of it is changed."""
    for profile in PROFILES:
        for op in profile.operations:
            expected = op.render(SLOT, random.Random(seed))
            assert expected.count(SLOT) == 1
            assert op.render(text, random.Random(seed)) == expected.replace(SLOT, text)
        judged = profile.judge.render(first=SLOT, second=SLOT2)
        assert profile.judge.render(first=text, second=other) == judged.replace(SLOT, text).replace(SLOT2, other)


@FUZZ
@given(
    text=INSTRUCTION,
    parent=INSTRUCTION,
    finish=st.sampled_from([None, "stop", "length", "content_filter", "tool_calls", ""]),
)
def test_the_rules_take_any_text(text, parent, finish):
    cleaned = unwrap(text).text
    assert isinstance(cleaned, str) and len(cleaned) <= len(text)
    for verdict in (
        check_evolution(cleaned, finish, parent, LEAKS),
        check_response(text, finish, 80, instruction=parent),
    ):
        assert verdict.keep or (verdict.rule in RULES and verdict.detail)
    assert judge_reader.parse_judgement(text) in ("equal", "not_equal", "unclear")
    assert isinstance(normalize(text), str)
    changed = script_change(parent, text)
    assert changed is None or (isinstance(changed, tuple) and len(changed) == 2)


@FUZZ
@given(texts=st.lists(INSTRUCTION, min_size=1, max_size=8))
def test_dedup_takes_any_text_and_always_finds_an_exact_repeat(texts):
    d = Deduper(0.9, "ratio")
    for i, t in enumerate(texts):
        d.check(t)
        d.add(f"t{i}", t)
    for t in texts:
        match = d.check(t)
        assert match is not None and match.rule == "exact_duplicate"
    assert len(d.dedup([f"u{i}" for i in range(len(texts))], texts)) == len(texts)


@FUZZ
@given(text=INSTRUCTION)
def test_any_answer_survives_the_cache_and_the_output_files(text):
    answer = _valid_unicode(text)  # what the client returns for a body with lone surrogates in it
    answer.encode("utf-8")
    assert answer == text or has_surrogate(text)
    with tempfile.TemporaryDirectory() as tmp:
        cache = CallCache(Path(tmp) / "calls.sqlite")
        try:
            cache.put(b"k" * 20, Completion(text=answer, finish_reason="stop", usage=Usage(prompt_tokens=1)))
            assert cache.get(b"k" * 20).text == answer
        finally:
            cache.close()
        record = Record(
            id="s1.r1",
            seed_id="s1",
            seed_index=0,
            parent_id="s1",
            round=1,
            operation="x",
            instruction=answer,
            output=answer,
        )
        write_jsonl(Path(tmp) / "records.jsonl", [record])
        assert read_jsonl(Path(tmp) / "records.jsonl") == [record.model_dump(mode="json")]
    _ = Sampling()  # the cache key's sampling type takes no text: nothing else to fuzz there
