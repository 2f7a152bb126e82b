"""The rule registry is the one list of rule names: the code's, the CLI's, the manifest's and the README's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from evol.config import RULES
from evol.rules import conversation, duplicates, endpoint, evolution, judgement, response
from evol.rules import registry as rules
from evol.rules.rule import Rule

ROOT = Path(__file__).resolve().parents[2]
#: the modules whose rules fire, each rule's row beside the code that fires it
RULE_MODULES = (conversation, duplicates, endpoint, evolution, judgement, response)


def rows_of(module) -> dict[str, Rule]:
    return {name: value for name, value in vars(module).items() if isinstance(value, Rule)}


def test_the_readme_table_is_the_registry():
    assert rules.table() in (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_registry_holds_every_row_of_the_rule_modules_once():
    defined = [row for module in RULE_MODULES for row in rows_of(module).values()]
    assert sorted(defined, key=id) == sorted(rules.REGISTRY, key=id)
    assert len(set(map(id, rules.REGISTRY))) == len(rules.REGISTRY)


def test_each_rule_fires_beside_its_row():
    """A row's module names the rule where it drops something (``Verdict.drop(ROW.name``); the duplicate rules are the
    index's match kinds, turned into rejections by ``duplicates.check_duplicate``."""
    for module in RULE_MODULES:
        source = Path(module.__file__).read_text(encoding="utf-8")
        for const, row in rows_of(module).items():
            if row is duplicates.DUPLICATE:
                index = (ROOT / "evol" / "dedup" / "index.py").read_text(encoding="utf-8")
                assert all(f'Match("{name}"' in index for name in row.names)
                continue
            assert re.search(rf"Verdict\.drop\(\s*{const}\.name", source), f"{module.__name__}.{const} never fires"


def test_no_rule_fires_outside_the_rules_package():
    """Stages ask the rules; none drops a candidate under a name of its own."""
    for path in (ROOT / "evol").rglob("*.py"):
        if path.parent.name == "rules":
            continue
        source = path.read_text(encoding="utf-8")
        assert "Verdict.drop(" not in source, path
        assert not re.search(r'rejected\(\s*"(eliminated|duplicate)",\s*"', source), path


@pytest.mark.slow
def test_the_cli_takes_every_rule_and_only_those(tmp_path):
    from ..conftest import run_cli

    proc = run_cli("run", "--seeds", str(tmp_path / "s.txt"), "--disable-rule", "not_a_rule")
    assert proc.returncode == 2 and "not_a_rule" in proc.stderr and "too_long" in proc.stderr


def test_names_are_unique():
    assert len(RULES) == len(set(RULES)) and all(re.fullmatch(r"[a-z_]+", n) for n in RULES)
