"""The rule registry is the one list of rule names: the code's, the CLI's, the manifest's and the README's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from evol.config import RULES
from evol.rules import registry as rules

ROOT = Path(__file__).resolve().parent.parent
#: where a rule is named as it fires: a filter's verdict, the pipeline's own checks, dedup's matches
FIRED = re.compile(r'Verdict\.drop\(\s*"(\w+)"|reject\(\s*"eliminated",\s*"(\w+)"|Match\(\s*"(\w+_duplicate)"')


def test_the_readme_table_is_the_registry():
    assert rules.table() in (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_rule_the_code_fires_is_registered_and_every_registered_rule_fires_somewhere():
    fired = set()
    for path in (ROOT / "evol").rglob("*.py"):
        for m in FIRED.finditer(path.read_text(encoding="utf-8")):
            fired.add(next(g for g in m.groups() if g))
    fired.discard("semantic_duplicate")  # evol dedup's embeddings pass over a finished dataset, not a run's rule
    assert fired <= set(RULES), sorted(fired - set(RULES))
    # a rule fired only through a variable (the judge's, from filters.check_judgement) is named in its module
    named_elsewhere = set(RULES) - fired
    for name in named_elsewhere:
        assert any(
            f'"{name}"' in p.read_text(encoding="utf-8")
            for p in (ROOT / "evol").rglob("*.py")
            if p.name not in ("rules.py", "config.py")
        ), name


@pytest.mark.slow
def test_the_cli_takes_every_rule_and_only_those(tmp_path):
    from .conftest import run_cli

    proc = run_cli("run", "--seeds", str(tmp_path / "s.txt"), "--disable-rule", "not_a_rule")
    assert proc.returncode == 2 and "not_a_rule" in proc.stderr and "too_long" in proc.stderr


def test_names_are_unique():
    assert len(RULES) == len(set(RULES)) and all(re.fullmatch(r"[a-z_]+", n) for n in RULES)
