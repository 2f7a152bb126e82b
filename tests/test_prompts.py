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
    respond = {f"{profile}/respond"} if p.respond else set()
    assert set(p.template_hashes()) == {f"{profile}/{op.name}" for op in p.operations} | {"judge"} | respond


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
@pytest.mark.slow
def test_rendering_any_unicode_embeds_it_verbatim(text):
    p = Prompt.from_text("t", "A ${instruction} B ${other}", {"instruction", "other"})
    assert p.render(instruction=text, other="o") == f"A {text} B o"


@pytest.mark.parametrize(
    "text, message",
    [
        ("no slot here", r"lacks the slot\(s\) \$\{instruction\}"),
        ("${instruction} ${typo}", r"unknown slot\(s\) \$\{typo\}"),
        ("${instruction} costs $5", "stray"),
    ],
)
def test_template_slot_errors_name_the_file(text, message):
    with pytest.raises(TemplateError, match=message):
        Prompt.from_text("t", text, {"instruction"}, path="prompts/x.txt")


def test_custom_prompts_dir_with_a_bad_template_is_a_clear_error(tmp_path):
    import shutil

    shutil.copytree(default_prompts_dir(), tmp_path / "p")
    (tmp_path / "p" / "general" / "mutation.txt").write_text("Mutate: ${instr}\n")
    with pytest.raises(TemplateError, match=r"mutation.txt lacks the slot"):
        load_profile("general", tmp_path / "p")
    with pytest.raises(ConfigError, match=r"Unknown profile 'poetry'.*known profiles: auto, code, general, math"):
        load_profile("poetry", tmp_path / "p")


def test_weights_override_and_unknown_operations_are_refused():
    p = load_profile("general", weights={"mutation": 0, "deepening": 5})
    picks = {p.choose(random.Random(i)).name for i in range(200)}
    assert "mutation" not in picks and "deepening" in picks
    with pytest.raises(ConfigError, match="unknown operation"):
        load_profile("general", weights={"nope": 1})


def _math_with(tmp_path, table: str):
    """A copy of the shipped prompts whose math profile has ``table`` (TOML) where its [lines] are."""
    import shutil

    shutil.copytree(default_prompts_dir(), tmp_path / "p")
    spec = tmp_path / "p" / "math" / "profile.toml"
    text = spec.read_text()
    spec.write_text(text[: text.index("[lines]")] + table + "\n")
    return spec


def test_math_lines_draw_only_their_own_operations_in_every_round():
    p = load_profile("math")
    assert p.line_names == ("downward", "upward") and not p.schedule
    rounds = (1, 2, 3, 9)
    down = {p.choose(random.Random(f"7:s{i}:{r}"), r, line="downward").name for i in range(200) for r in rounds}
    up = {p.choose(random.Random(f"7:s{i}:{r}"), r, line="upward").name for i in range(200) for r in rounds}
    assert down == {"downward"}
    assert up == {"upward_constraints", "upward_reasoning"}  # upward_compose weighs 0 unless asked for
    assert "upward_compose" in {
        load_profile("math", weights={"upward_compose": 1}).choose(random.Random(i), 2, line="upward").name
        for i in range(200)
    }
    assert load_profile("general").line_names == ("",)  # one plain line: the pool as before lines existed


def test_a_line_whose_operations_all_weigh_0_is_left_out(tmp_path):
    p = load_profile("math", weights={"downward": 0})
    assert p.line_names == ("upward",)
    _math_with(tmp_path, '[lines]\ndownward = ["downward"]')
    with pytest.raises(ConfigError, match="every operation of every line \\(downward\\) has weight 0"):
        load_profile("math", tmp_path / "p", weights={"downward": 0})


def test_a_schedule_draws_downward_in_round_one_and_upward_after(tmp_path):
    _math_with(tmp_path, '[schedule]\n"1" = ["downward"]\n"2-" = ["upward"]')
    p = load_profile("math", tmp_path / "p")
    assert p.line_names == ("",)
    first = {p.choose(random.Random(f"7:s{i}:1"), 1).name for i in range(200)}
    later = {p.choose(random.Random(f"7:s{i}:{r}"), r).name for i in range(200) for r in (2, 3, 9)}
    assert first == {"downward"}
    assert later == {"upward_constraints", "upward_reasoning"}


def test_without_a_schedule_the_round_changes_no_choice():
    p = load_profile("general")
    assert not p.schedule
    assert [p.choose(random.Random(i), 3).name for i in range(50)] == [
        p.choose(random.Random(i)).name for i in range(50)
    ]


@pytest.mark.parametrize(
    "schedule, message",
    [
        ('"x" = ["downward"]', "schedule key 'x' is not a round"),
        ('"0" = ["downward"]', "schedule key '0' is not a round"),
        ('"3-2" = ["downward"]', "schedule key '3-2' is not a round"),
        ('"1" = ["sideways"]', "names unknown operation\\(s\\) or kind\\(s\\) sideways"),
        ('"1" = []', "must list operation names or kinds"),
        ('"1" = "downward"', "must list operation names or kinds"),
        ('"1-3" = ["downward"]\n"2-" = ["upward"]', "schedule rounds '1-3' and '2-' overlap"),
        ('"1" = ["upward_compose"]', "has weight 0"),
    ],
)
def test_a_bad_schedule_is_one_sentence_naming_the_file(tmp_path, schedule, message):
    spec = _math_with(tmp_path, "[schedule]\n" + schedule)
    with pytest.raises(ConfigError, match=message) as e:
        load_profile("math", tmp_path / "p")
    assert str(spec) in str(e.value) and str(e.value).count(". ") == 0


@pytest.mark.parametrize(
    "lines, message",
    [
        ('[lines]\nUp = ["upward"]', "line name 'Up' must be lower-case"),
        ('[lines]\nup = ["sideways"]', "line 'up' names unknown operation\\(s\\) or kind\\(s\\) sideways"),
        ("[lines]\nup = []", "line 'up' must list operation names or kinds"),
        ('[lines]\nup = "upward"', "line 'up' must list operation names or kinds"),
        ("[lines]", "lines must be a table"),
        ('[lines]\nup = ["upward"]\n[schedule]\n"1" = ["upward"]', "has both \\[schedule\\] and \\[lines\\]"),
    ],
)
def test_bad_lines_are_one_sentence_naming_the_file(tmp_path, lines, message):
    spec = _math_with(tmp_path, lines)
    with pytest.raises(ConfigError, match=message) as e:
        load_profile("math", tmp_path / "p")
    assert str(spec) in str(e.value)


@pytest.mark.slow
def test_a_bad_schedule_stops_the_cli_with_one_sentence_and_exit_2(tmp_path):
    from .conftest import SEEDS, run_cli

    _math_with(tmp_path, '[schedule]\n"1" = ["downward"]\n"2-" = ["sideways"]')
    proc = run_cli(
        "run",
        "--seeds",
        str(SEEDS),
        "--profile",
        "math",
        "--prompts-dir",
        str(tmp_path / "p"),
        "--out",
        str(tmp_path / "out"),
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--limit",
        "2",
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "profile.toml: schedule round(s) '2-' names unknown operation(s) or kind(s) sideways" in proc.stderr


def test_math_answers_are_asked_for_step_by_step_and_general_ones_are_the_instruction_alone():
    assert load_profile("general").response_prompt(WEIRD) == WEIRD  # the call cache keys on it: unchanged
    math = load_profile("math").response_prompt(WEIRD)
    assert WEIRD in math and "step by step" in math and "${" not in math.replace(WEIRD, "")
    assert "math/respond" in load_profile("math").template_hashes()


def test_each_profile_names_its_labels_and_leak_phrases_from_its_own_templates():
    general, code, math = (load_profile(n) for n in ("general", "code", "math"))
    assert {"rewritten prompt", "created prompt"} <= set(general.labels)
    assert "instruction" in general.nouns and "question" in code.nouns and "problem" in math.nouns
    for p in (general, code, math):
        assert {"#rewritten prompt#", "given prompt", "rewritten prompt"} <= set(p.leak_markers)


def test_in_depth_templates_take_one_small_step_and_complicate_input_is_not_capped():
    general = {op.name: op.prompt.text for op in load_profile("general").operations if op.kind == "in-depth"}
    for name, text in general.items():
        assert "GPT-4" not in text and "strong AI" not in text
        if name not in ("mutation", "complicate_input"):
            assert "a little harder" in text and "10 to 20 words to the original" in text
    assert "10 to 20 words to the original" not in general["complicate_input"]
    assert "the room it needs" in general["complicate_input"]
    code = {op.name: op for op in load_profile("code").operations}
    assert code["higher_complexity"].weight < 1 and "occasionally" not in code["higher_complexity"].prompt.text
