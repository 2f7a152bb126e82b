import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evol.errors import ConfigError, TemplateError
from evol.prompts import Prompt, default_prompts_dir, load_profile


@pytest.mark.parametrize("profile", ["general", "code", "math"])
def test_shipped_profiles_load_and_render(profile):
    p = load_profile(profile)
    assert len(p.operations) >= 2
    rng = random.Random(0)
    for op in p.operations:
        text = op.render("Sort a list.", rng)
        assert "Sort a list." in text and "${" not in text
    assert set(p.template_hashes()) == {f"{profile}/{op.name}" for op in p.operations} | {"judge"}


def test_complicate_input_fills_its_format_slot_from_the_choices():
    op = next(o for o in load_profile("general").operations if o.name == "complicate_input")
    formats = {op.render("X", random.Random(i)) for i in range(30)}
    assert len(formats) > 1  # several formats drawn
    assert all(any(c in t for c in op.choices["format"]) for t in formats)


WEIRD = "{instruction} $x %s <PROMPT> ${instruction} $$ {0} {{}} \\n $"


def test_user_text_with_template_syntax_is_inserted_verbatim():
    p = Prompt.from_text("t", "Before\n${instruction}\nAfter $$5", {"instruction"})
    assert p.render(instruction=WEIRD) == f"Before\n{WEIRD}\nAfter $5"


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_rendering_any_unicode_embeds_it_verbatim(text):
    p = Prompt.from_text("t", "A ${instruction} B ${other}", {"instruction", "other"})
    assert p.render(instruction=text, other="o") == f"A {text} B o"


@pytest.mark.parametrize("text, message", [
    ("no slot here", r"lacks the slot\(s\) \$\{instruction\}"),
    ("${instruction} ${typo}", r"unknown slot\(s\) \$\{typo\}"),
    ("${instruction} costs $5", "stray"),
])
def test_template_slot_errors_name_the_file(text, message):
    with pytest.raises(TemplateError, match=message):
        Prompt.from_text("t", text, {"instruction"}, path="prompts/x.txt")


def test_custom_prompts_dir_with_a_bad_template_is_a_clear_error(tmp_path):
    import shutil

    shutil.copytree(default_prompts_dir(), tmp_path / "p")
    (tmp_path / "p" / "general" / "mutation.txt").write_text("Mutate: ${instr}\n")
    with pytest.raises(TemplateError, match="mutation.txt lacks the slot"):
        load_profile("general", tmp_path / "p")
    with pytest.raises(ConfigError, match="Unknown profile 'poetry'.*known profiles: code, general, math"):
        load_profile("poetry", tmp_path / "p")


def test_weights_override_and_unknown_operations_are_refused():
    p = load_profile("general", weights={"mutation": 0, "deepening": 5})
    picks = {p.choose(random.Random(i)).name for i in range(200)}
    assert "mutation" not in picks and "deepening" in picks
    with pytest.raises(ConfigError, match="unknown operation"):
        load_profile("general", weights={"nope": 1})
