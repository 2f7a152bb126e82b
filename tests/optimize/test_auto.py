"""The auto profile: the universal evolving method, its final section extracted, no_final_instruction."""

from __future__ import annotations

import json
import shutil

import pytest

from evol.errors import TemplateError
from evol.prompts import default_prompts_dir, load_profile
from evol.rules.evolution import extract_final
from evol.testing.auto_script import NO_FINAL, AutoScript, fate, final_for, refused
from evol.testing.server import ScriptedServer

from ..conftest import run_cli

MARK = "#Final Instruction#"

ANSWERS = [  # (a structured answer as models write it, the final instruction in it)
    (
        "#Ways to Complicate#\n1. a\n#Plan#\nb\n#Review#\nok\n#Final Instruction#\nWrite a haiku about rain in May.",
        "Write a haiku about rain in May.",
    ),
    (
        "**#Ways to Complicate#**\n- x\n\n**#Final Instruction#:**\nList three primes above 100.\n",
        "List three primes above 100.",
    ),
    (
        "### Plan\nstuff\n\n### Final Instruction\n\nExplain TCP slow start.\n\nIt must cite RFC 5681.",
        "Explain TCP slow start.\n\nIt must cite RFC 5681.",
    ),
    (
        "#Review#\nIn the final instruction I keep the table.\nFinal Instruction: Sort the table by date.",
        "Sort the table by date.",
    ),
    ("#Final Instruction#\nDraft one\n#Review#\nbetter\n#Final Instruction#\nDraft two\n#Notes#\nnone", "Draft two"),
]


@pytest.mark.parametrize("answer,final", ANSWERS)
def test_extracts_the_last_final_section(answer, final):
    assert extract_final(answer, MARK) == final


@pytest.mark.parametrize(
    "answer",
    [
        "#Plan#\nx\n#First Rewrite#\nWrite a poem.",
        "",
        "#Final Instruction#\n  \n",
        "The final instruction is hard to write.",
    ],
)
def test_no_final_section_is_none(answer):
    assert extract_final(answer, MARK) is None


def test_the_auto_profile_loads_with_its_marker():
    profile = load_profile("auto")
    assert [op.extract for op in profile.operations] == [MARK]
    assert "#plan#" in profile.leak_markers  # a heading copied into the final instruction is a leak


@pytest.mark.parametrize(
    "value,words",
    [("42", "one line"), ('"a\\nb"', "one line"), ('""', "one line"), ('"#Not In Template#"', "does not appear")],
)
@pytest.mark.slow
def test_a_bad_extract_value_is_one_sentence_naming_the_file(tmp_path, value, words):
    prompts = tmp_path / "prompts"
    shutil.copytree(default_prompts_dir(), prompts)
    spec = prompts / "auto" / "profile.toml"
    spec.write_text(spec.read_text().replace('extract = "#Final Instruction#"', f"extract = {value}"))
    with pytest.raises(TemplateError) as err:
        load_profile("auto", prompts)
    assert str(spec) in str(err.value) and words in str(err.value)
    proc = run_cli("run", "--seeds", str(tmp_path / "x.txt"), "--prompts-dir", str(prompts), "--profile", "auto")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and str(spec) in proc.stderr


@pytest.mark.slow
def test_run_with_the_auto_profile_keeps_only_final_instructions(tmp_path):
    seeds = [f"Describe how tide pools form on rocky coast number {i}." for i in range(12)]
    seeds += [f"Summarise the plot of story {NO_FINAL} {i}." for i in range(3)]
    (tmp_path / "seeds.txt").write_text("\n".join(seeds) + "\n")
    method = load_profile("auto").operations[0].prompt.text
    with ScriptedServer(AutoScript()) as srv:
        proc = run_cli(
            "run",
            "--seeds",
            str(tmp_path / "seeds.txt"),
            "--profile",
            "auto",
            "--rounds",
            "1",
            "--no-seeds",  # the dataset under test is the evolutions
            "--out",
            str(tmp_path / "run"),
            "--base-url",
            srv.base_url,
        )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((tmp_path / "run" / "dataset.json").read_text())
    expected = {final_for(s, method) for s in seeds if NO_FINAL not in s and fate(s, method) == "ok"}
    assert {r["instruction"] for r in rows} == expected and expected
    assert not any("#" in r["instruction"] for r in rows)
    rejected = [json.loads(x) for x in (tmp_path / "run" / "rejected.jsonl").read_text().splitlines()]
    assert sum(NO_FINAL in r["instruction"] for r in rejected if r["rule"] == "no_final_instruction") == 3
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    # a refusal has no final section either
    assert manifest["by_rule"]["no_final_instruction"] == 3 + sum(map(refused, seeds))
    assert manifest["counts"]["balanced"]


def test_the_optimizers_failure_rate_counts_answers_that_ask_back(tmp_path):
    """Auto Evol-Instruct counts an answer that asks for what the evolved instruction lost as a failed evolution:
    the dev evaluation counts clarification_response as it counts any other elimination."""
    import asyncio

    from evol.config import RunConfig
    from evol.llm.cache import CachedChat, CallCache
    from evol.models import Models, Seed
    from evol.optimize.optimizer import Optimizer
    from evol.optimize.types import OptimizeOptions

    from ..fakes import FakeChat

    asks = ("name the river", "date each event", "cite two sources", "keep it under fifty words")

    def answer(prompt: str, sample: str) -> str:
        item = sample.split(":")[0]
        if sample.endswith(":evolve"):
            ask = asks[int(item[1])]
            return f"#Plan#\nadd a constraint\n#Final Instruction#\nRewrite the passage below formally and {ask}."
        if sample.endswith(":judge"):
            return "Not Equal"
        if item.startswith(("d0", "d2")):  # the passage it names is not there: asked for, as real models do
            return "Could you please provide the passage you would like me to rewrite?"
        return "Here is the passage rewritten in a formal register, with every name kept and each clause made whole."

    config = RunConfig(seeds="unused", profile="auto")
    dev = [Seed(id=f"d{i}", index=i, instruction=f"Rewrite the passage about topic {i}.") for i in range(4)]
    chat = CachedChat(FakeChat(answer), CallCache(tmp_path / "calls.sqlite"))
    profile = load_profile("auto")
    models = Models(evolve="m", respond="m", judge="m")
    optimizer = Optimizer(config, OptimizeOptions(out=tmp_path), profile, chat, models, train=[], dev=dev)
    evaluation = asyncio.run(optimizer.evaluate(profile))
    assert evaluation.by_rule == {"clarification_response": 2}
    assert (evaluation.failures, evaluation.attempts, evaluation.failure_rate) == (2, 4, 0.5)
