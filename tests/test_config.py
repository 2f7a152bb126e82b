import pytest

from evol.config import build_config, read_config_file
from evol.errors import ConfigError


def test_file_values_with_cli_overrides_and_relative_paths(tmp_path):
    cfg = tmp_path / "evol.toml"
    cfg.write_text('seeds = "seeds.jsonl"\nrounds = 2\n[sampling]\ntemperature = 0.5\n')
    values = read_config_file(cfg)
    c = build_config(values, {"rounds": 3, "model": None})
    assert c.rounds == 3 and c.sampling.temperature == 0.5 and c.sampling.top_p == 0.95
    assert c.seeds == tmp_path / "seeds.jsonl"


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
