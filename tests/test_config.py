from pathlib import Path

import pytest

from evol.config import build_config, read_config_file
from evol.errors import ConfigError


def test_file_values_with_cli_overrides_and_relative_paths(tmp_path):
    cfg = tmp_path / "evol.toml"
    cfg.write_text('seeds = "seeds.jsonl"\nrounds = 2\n[sampling]\ntemperature = 0.5\n')
    values = read_config_file(cfg)
    c = build_config(values, {"rounds": 3, "model": None})
    assert c.rounds == 3 and c.sampling.temperature == 0.5 and c.sampling.top_p == 0.95
    assert c.seeds == str(tmp_path / "seeds.jsonl")  # kept as a string: a path or a URL


def test_yaml_config(tmp_path):
    cfg = tmp_path / "evol.yaml"
    cfg.write_text("seeds: s.txt\nprofile: code\ndisable_rules: [prompt_leak]\n")
    c = build_config(read_config_file(cfg), {})
    assert c.profile == "code" and not c.rule_on("prompt_leak") and c.rule_on("empty_response")


@pytest.mark.parametrize(
    "values, message",
    [
        ({"seeds": "s", "roundz": 3}, "unknown option 'roundz'"),
        ({"seeds": "s", "rounds": "many"}, "option 'rounds'"),
        ({"seeds": "s", "disable_rules": ["nope"]}, "unknown rule"),
        ({"seeds": "s", "base_url": "localhost:8000"}, "must start with http"),
        ({}, "option 'seeds' is required"),
    ],
)
def test_bad_values_give_one_short_message(values, message):
    with pytest.raises(ConfigError, match=message) as e:
        build_config(values, {})
    assert "\n" not in str(e.value) and "pydantic" not in str(e.value)


def test_a_key_in_a_config_file_is_refused(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text('{"seeds": "s", "api_key": "sk-secret"}')
    with pytest.raises(ConfigError, match="EVOL_API_KEY") as e:
        read_config_file(cfg)
    assert "sk-secret" not in str(e.value)


def test_the_key_comes_from_the_environment_and_never_leaves_in_dumps(monkeypatch):
    monkeypatch.setenv("EVOL_API_KEY", "sk-test-SECRET123456")
    c = build_config({"seeds": "s"}, {})
    assert c.api_key.get_secret_value() == "sk-test-SECRET123456"
    assert "SECRET123456" not in repr(c) and "SECRET123456" not in str(c.public_dict())
    assert "SECRET123456" not in c.model_dump_json()


# --- the run's options are made from RunConfig ------------------------------------------------------------------


def run_parser():
    import argparse

    from evol.cli.options import add_run_options

    p = argparse.ArgumentParser()
    add_run_options(p)
    return p


def test_every_config_field_has_an_option_or_is_listed_as_file_only():
    from evol.cli.run_options import FILE_ONLY, SHAPED
    from evol.config import RunConfig

    dests = {a.dest for a in run_parser()._actions}
    fields = set(RunConfig.model_fields)
    with_option = {f for f in fields if f in dests or SHAPED.get(f) in dests}
    assert fields - with_option - set(FILE_ONLY) == set(), "give the field a plain type, a shaped option or FILE_ONLY"
    assert set(FILE_ONLY) <= fields and not with_option & set(FILE_ONLY)


def _value_for(name, field):
    """A command-line value the field accepts, other than its default."""
    from evol.cli.run_options import option_type

    kind = option_type(field.annotation)
    if isinstance(kind, tuple):
        return kind[-1], kind[-1]
    if kind is str:
        return ("http://127.0.0.1:9/v1",) * 2 if name == "base_url" else ("x",) * 2
    if kind is Path:
        return "p", Path("p")
    value = 2 if field.default == 1 else 1
    return str(value), kind(value)


def test_each_generated_option_sets_its_field():
    from evol.cli.options import config_from_args
    from evol.cli.run_options import SHAPED, option_type
    from evol.config import RunConfig

    p = run_parser()
    checked = []
    for name, field in RunConfig.model_fields.items():
        action = next((a for a in p._actions if a.dest == name), None)
        if action is None or option_type(field.annotation) is None or name in SHAPED:
            continue
        flag = action.option_strings[0]
        assert flag.replace("--no-", "--", 1) == "--" + name.replace("_", "-")
        if option_type(field.annotation) is bool:
            argv, expected = [flag], flag == "--" + name.replace("_", "-")
        else:
            text, expected = _value_for(name, field)
            argv = [flag, text]
        base = [] if name == "seeds" else ["--seeds", "s"]
        config = config_from_args(p.parse_args([*base, *argv]))
        assert getattr(config, name) == expected != field.default, name
        assert field.description and field.description in action.help, name
        checked.append(name)
    assert {"seeds", "rounds", "dedup_scorer", "batch", "timeout", "rate_window"} <= set(checked)


def test_seeds_are_in_the_dataset_unless_no_seeds_says_otherwise():
    from evol.cli.options import config_from_args

    p = run_parser()
    # WizardLM's training set is the seeds plus every round: on by default; --include-seeds is the old spelling
    assert config_from_args(p.parse_args(["--seeds", "s"])).include_seeds is True
    assert config_from_args(p.parse_args(["--seeds", "s", "--no-seeds"])).include_seeds is False
    assert config_from_args(p.parse_args(["--seeds", "s", "--include-seeds"])).include_seeds is True


def test_no_seeds_on_the_command_line_wins_over_the_config_file(tmp_path):
    from evol.cli.options import config_from_args

    cfg = tmp_path / "evol.toml"
    cfg.write_text('seeds = "s"\ninclude_seeds = true\n')
    assert config_from_args(run_parser().parse_args(["--config", str(cfg), "--no-seeds"])).include_seeds is False
    cfg.write_text('seeds = "s"\ninclude_seeds = false\n')
    assert config_from_args(run_parser().parse_args(["--config", str(cfg)])).include_seeds is False


def test_options_keep_their_spellings_metavars_and_defaults_in_help():
    p = run_parser()
    by_flag = {s: a for a in p._actions for s in a.option_strings}
    assert by_flag["--answers"].metavar == "N" and by_flag["--evolve-answers"].metavar == "K"
    assert by_flag["--dedup-scorer"].metavar == "DEDUP_SCORER" and "WRatio" in by_flag["--dedup-scorer"].choices
    assert by_flag["--timeout"].help.endswith("(default 120)") and by_flag["--top-p"].help.endswith("(default 0.95)")
    assert by_flag["--rounds"].default is None  # unset options leave the config file and the defaults alone
    with pytest.raises(SystemExit):
        p.parse_args(["--seeds", "s", "--dedup-scorer", "nope"])
