"""What a run will cost before it pays for anything: calls, tokens, dollars and wall time, each with a range.

The model: every round tries each pool entry once (the pool holds one entry per seed and line), so a round makes
``seeds × lines × calls per attempt`` calls of each stage. The calls per attempt are the method's defaults below, or
measured from a run folder's finished rounds (its manifest), or from a probe run of a few seeds. Prompt tokens
come from the templates rendered around the seeds themselves (the operation each seed gets in round 1 is known
in advance: the choice is seeded), counted as characters times tokens per character; an instruction grows by
``growth`` a round, which later rounds' prompts carry. Completion tokens per call are per stage.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from evol.config import RunConfig
from evol.llm.local import setup as local_setup
from evol.models import Seed, Usage
from evol.pricing import cost
from evol.prompts import Profile, choice_rng
from evol.rundir.folder import RECORDS
from evol.rundir.manifest import Estimate, Manifest, Span, StageEstimate
from evol.seeds import SeedSet

#: (low, expected, high)
Triple = tuple[float, float, float]

#: the model a run without --model and --base-url uses (evol.llm.backend's default, priced in the estimate)
OPENAI_DEFAULT = "gpt-4o-mini"


class Rates(BaseModel):
    """What an attempt costs, each a (low, expected, high) triple: calls per attempt by stage, completion tokens per
    call by stage, tokens per character of a prompt, an instruction's growth per round and seconds per call."""

    model_config = ConfigDict(frozen=True)

    source: str
    calls: dict[str, Triple]  # per attempt of a round
    seed_calls: dict[str, Triple]  # per seed answered (include_seeds), by stage
    completion: dict[str, Triple]  # tokens per call (evolve's: a share of the parent's length, see growth)
    tokens_per_char: Triple
    growth: Triple  # the pool's mean instruction length, next round over this one
    seconds_per_call: Triple


def method_rates(config: RunConfig) -> Rates:
    """The method's defaults: most evolutions pass the checks and the judge (WizardLM's elimination removes a
    minority), a few judge answers and answers are asked again; wide ranges, since no call has been seen."""
    judge = config.rule_on("no_information_gain")
    passed = (0.75, 0.9, 0.97)  # evolutions through the evolution checks
    kept = (0.6, 0.85, 0.95) if judge else (1.0, 1.0, 1.0)  # ... and through the judge
    again = (1.0, 1.05, 1.2)  # judge answers and cut answers asked once more
    respond = _mul(passed, kept, again)
    calls: dict[str, Triple] = {"evolve": (1.0, 1.0, 1.0), "respond": respond}
    if judge:
        calls["judge"] = _mul(passed, again)
    calls.update(_answer_calls(config, respond))
    return Rates(
        source="the method's defaults",
        calls=calls,
        seed_calls={"respond": again, **_answer_calls(config, again)},
        completion={
            "judge": (1.0, 4.0, 60.0),
            "respond": (80.0, 300.0, float(config.response_sampling.max_tokens)),
            "rank": (10.0, 40.0, 120.0),
            "evolve_answer": (80.0, 350.0, float(config.response_sampling.max_tokens)),
        },
        tokens_per_char=(0.2, 0.25, 0.33),
        growth=(1.05, 1.3, 1.6),
        seconds_per_call=(0.5, 3.0, 12.0),
    )


def embedded_rates(config: RunConfig) -> Rates:
    """The shipped embedded model's rates, measured on it: a 135M model fails most evolutions on the checks (it
    echoes the template, gets cut at max_tokens), far below the method's defaults, which assume a capable model.

    Measured with the quick start (``--limit 20 --rounds 2``: 40 attempts; evolve 40, judge 4, respond 3 calls;
    168 s) and ``--limit 60 --rounds 3 --seed 11`` (180 attempts, 31 through the checks; evolve 180, judge 60,
    respond 35; 795 s), four requests in flight. Its answers are a function of the call (seeded), so these hold
    until the templates or the rules change; the test on the embedded model checks its run falls in the range.
    """
    judge = config.rule_on("no_information_gain")
    passed = (0.05, 0.15, 0.3)  # 0.10 and 0.17 measured
    judged = (1.0, 1.6, 2.2)  # judge calls an evolution through the checks: its verdicts are often unreadable
    kept = (0.6, 0.9, 1.0) if judge else (1.0, 1.0, 1.0)
    again = (1.0, 1.1, 1.25)  # answers asked once more
    respond = _mul(passed, kept, again)
    calls: dict[str, Triple] = {"evolve": (1.0, 1.0, 1.0), "respond": respond}
    if judge:
        calls["judge"] = _mul(passed, judged)
    calls.update(_answer_calls(config, respond))
    max_tokens = float(config.response_sampling.max_tokens)
    return method_rates(config).model_copy(
        update={
            "source": "measurements of the embedded model",
            "calls": calls,
            "seed_calls": {"respond": again, **_answer_calls(config, again)},
            "completion": {
                "judge": (2.0, 10.0, 16.0),
                "respond": (0.5 * max_tokens, 0.85 * max_tokens, max_tokens),  # most answers reach max_tokens
                "rank": (10.0, 40.0, 120.0),
                "evolve_answer": (0.5 * max_tokens, 0.85 * max_tokens, max_tokens),
            },
            "seconds_per_call": (5.0, 12.0, 40.0),  # 14.3 and 11.6 s measured, at four in flight
        }
    )


def _answer_calls(config: RunConfig, respond: Triple) -> dict[str, Triple]:
    """Several candidates, ranking and answer evolution: each candidate answered and scored, each evolution of an
    answer one call and one score more."""
    if not config.ranks_answers:
        return {}
    k = config.candidate_count
    out = {"respond": _scale(respond, k), "rank": _scale(respond, k * (1 + config.evolve_answers))}
    if config.evolve_answers:
        out["evolve_answer"] = _scale(respond, k * config.evolve_answers)
    return out


def measured_rates(
    config: RunConfig, profile: Profile, seeds: Sequence[Seed], manifest: Manifest, folder: Path, source: str
) -> Rates | None:
    """Rates from a run's finished rounds (its manifest and records.jsonl, over ``seeds``), None if it finished
    none."""
    attempts, usage = manifest.counts.attempts, manifest.usage
    if attempts <= 0 or manifest.counts.rounds_done < 1 or not seeds:
        return None
    defaults = default_rates(config)
    # the seeds answered (include_seeds) made respond calls of round 0: not the rounds' per-attempt rates
    answered = sum(1 for s in seeds if not (s.output and s.output.strip())) if manifest.counts.seed_records else 0
    spread = 0.05 + 1.0 / math.sqrt(attempts)  # the rounds left may drift from those measured
    calls: dict[str, Triple] = {}
    completion = dict(defaults.completion)
    for stage, n in usage.calls.items():
        per = (n - (answered if stage == "respond" else 0)) / attempts
        calls[stage] = (per * (1 - spread), per, per * (1 + spread))
        if n and stage in usage.tokens_by_stage and stage != "evolve":
            out = usage.tokens_by_stage[stage].completion_tokens / n
            completion[stage] = (out * (1 - spread), out, out * (1 + spread))
    growth = _measured_growth(folder, manifest, seeds, profile.line_names) or defaults.growth
    tokens_per_char = defaults.tokens_per_char
    evolve = usage.tokens_by_stage.get("evolve")
    if evolve is not None and usage.calls.get("evolve"):
        # calibrated on the evolving prompts of the finished rounds: the tokens reported over the characters sent
        rounds = range(1, manifest.counts.rounds_done + 1)
        attempts_a_round = len(seeds) * len(profile.line_names)
        chars = attempts_a_round * sum(_evolve_chars(config, profile, seeds, r, growth[1]) for r in rounds)
        if chars > 0:
            per = evolve.prompt_tokens / chars
            tokens_per_char = (per * 0.95, per, per * 1.05)
    seconds = defaults.seconds_per_call
    paid = sum(usage.calls.values()) - sum(usage.calls_from_cache.values())
    if paid > 0 and manifest.seconds > 0:
        width = min(config.connections, len(seeds))
        per = manifest.seconds * width / paid
        seconds = (per * 0.5, per, per * 2.0)
    return Rates(
        source=source,
        calls=calls,
        seed_calls=defaults.seed_calls,
        completion=completion,
        tokens_per_char=tokens_per_char,
        growth=growth,
        seconds_per_call=seconds,
    )


def _measured_growth(
    folder: Path, manifest: Manifest, seeds: Sequence[Seed], lines: Sequence[str] = ("",)
) -> Triple | None:
    """The pool's mean instruction length, round over round, from records.jsonl (a kept evolution replaces its
    parent in the pool); None without records."""
    path = folder / RECORDS
    if not path.is_file():
        return None
    # round -> (seed, line) -> length of its kept instruction
    kept: dict[int, dict[tuple[str, str], int]] = defaultdict(dict)
    with path.open(encoding="utf-8") as f:
        for text in f:
            row = json.loads(text)
            kept[int(row.get("round") or 0)][row["seed_id"], row.get("line", "")] = len(row["instruction"])
    pool = {(s.id, line): len(s.instruction) for s in seeds for line in lines}
    ratios = []
    for r in range(1, manifest.counts.rounds_done + 1):
        before = statistics.mean(pool.values())
        pool.update({s: n for s, n in kept.get(r, {}).items() if s in pool})
        ratios.append(statistics.mean(pool.values()) / before)
    g = statistics.mean(ratios)
    return (1 + (g - 1) * 0.7, g, 1 + (g - 1) * 1.3)


def _evolve_chars(config: RunConfig, profile: Profile, seeds: Sequence, round_no: int, growth: float) -> float:
    """Mean characters of round ``round_no``'s evolving prompt: each pool entry's own operation (the choice is
    seeded) around its instruction, grown ``growth`` a round."""
    total, n = 0.0, 0
    for seed in seeds:
        for line in profile.line_names:
            rng = choice_rng(config.seed, seed.id, round_no, line)
            op = profile.choose(rng, round_no, line=line)
            template = len(op.render("", rng))
            total += template + len(seed.instruction) * growth ** (round_no - 1)
            n += 1
    return total / max(1, n)


def estimate(
    config: RunConfig,
    profile: Profile,
    seedset: SeedSet,
    rates: Rates,
    models: tuple[str, str, str] | None = None,
    rounds: Sequence[int] | range | None = None,
    seeds_done: bool = False,
) -> Estimate:
    """The estimate of ``rounds`` (default: all of them; a resumed run: those left), and of answering the seeds
    (include_seeds) unless ``seeds_done``. ``models``: evolve, respond, judge (default: the config's)."""
    evolve_model, respond_model, judge_model = models or _models(config)
    model_of = {
        "evolve": evolve_model,
        "judge": judge_model,
        "respond": respond_model,
        "rank": judge_model,
        "evolve_answer": respond_model,
        "seed": respond_model,
    }
    todo = list(rounds) if rounds is not None else list(range(1, config.rounds + 1))
    seeds = seedset.seeds
    n = len(seeds) * len(profile.line_names)  # the pool's entries: each tried once a round
    seed_len = statistics.mean(len(s.instruction) for s in seeds) if seeds else 0.0
    tpc = rates.tokens_per_char
    judge_chars = len(profile.judge.render(first="", second=""))
    respond_chars = len(profile.response_prompt(""))
    # per stage: calls, prompt tokens and completion tokens, each (low, expected, high)
    books: dict[str, list[Triple]] = defaultdict(lambda: [(0.0, 0.0, 0.0)] * 3)
    by_round: dict[str, dict[str, float]] = {}

    def add(stage: str, calls: Triple, prompt_chars: Triple, completion: Triple) -> None:
        c, p, o = books[stage]
        books[stage] = [_add(c, calls), _add(p, _mul(calls, prompt_chars, tpc)), _add(o, _mul(calls, completion))]

    if config.include_seeds and not seeds_done:
        need = sum(1 for s in seeds if not (s.output and s.output.strip()))
        for stage, per in rates.seed_calls.items():
            name = "respond" if stage == "respond" else stage
            add(name, _scale(per, need), _flat(respond_chars + seed_len), rates.completion.get(name, (0, 0, 0)))
        by_round["0"] = {s: round(need * v[1], 1) for s, v in rates.seed_calls.items()}
    for r in todo:
        # the parent's length in round r: the seeds' grown r-1 times (low and high take the growth's ends)
        parent = _scale(_mul(*[rates.growth] * (r - 1)), seed_len)
        child = _mul(parent, rates.growth)
        evolve_chars = _evolve_chars(config, profile, seeds, r, 1.0) - seed_len  # the templates alone
        per_round = {}
        for stage, per in rates.calls.items():
            calls = _scale(per, n)
            per_round[stage] = round(calls[1], 1)
            if stage == "evolve":
                add(stage, calls, _plus(parent, evolve_chars), _mul(child, tpc))
            elif stage == "judge":
                add(stage, calls, _plus(_add(parent, child), judge_chars), rates.completion["judge"])
            elif stage in ("respond", "evolve_answer"):
                add(stage, calls, _plus(child, respond_chars), rates.completion.get(stage, (0, 0, 0)))
            else:  # rank: the instruction, an answer and the rubric
                answer = _scale(rates.completion.get("respond", (0, 0, 0)), 1 / max(tpc[1], 1e-9))
                add(stage, calls, _plus(_add(child, answer), respond_chars), rates.completion.get(stage, (0, 0, 0)))
        by_round[str(r)] = per_round
    prices = config.price_table()
    by_stage: dict[str, StageEstimate] = {}
    total_calls: Triple = (0.0, 0.0, 0.0)
    total_tokens, total_cost = total_calls, total_calls
    unpriced: set[str] = set()
    for stage, (calls, prompt, completion) in sorted(books.items()):
        dollars = []
        for i in range(3):
            spent, missing = cost(
                {
                    model_of.get(stage, evolve_model): Usage(
                        prompt_tokens=int(prompt[i]), completion_tokens=int(completion[i])
                    )
                },
                prices,
            )
            dollars.append(spent)
            unpriced.update(missing)
        money = (dollars[0], dollars[1], dollars[2])
        by_stage[stage] = StageEstimate(
            calls=_counts(calls),
            prompt_tokens=_span(prompt),
            completion_tokens=_span(completion),
            cost_usd=_span(money, 6),
        )
        total_calls, total_cost = _add(total_calls, calls), _add(total_cost, money)
        total_tokens = _add(total_tokens, _add(prompt, completion))
    width = min(config.connections, max(1, n))
    seconds = _scale(_mul(total_calls, rates.seconds_per_call), 1 / width)
    return Estimate(
        source=rates.source,
        rounds=todo,
        calls=_counts(total_calls),
        tokens=_span(total_tokens),
        cost_usd=_span(total_cost, 6),
        seconds=_span(seconds),
        by_stage=by_stage,
        calls_by_round=by_round,
        unpriced_models=sorted(unpriced),
    )


def default_rates(config: RunConfig) -> Rates:
    """The rates of a run nothing was measured for: the shipped embedded model's own, else the method's."""
    return embedded_rates(config) if _shipped_model(config) else method_rates(config)


def _shipped_model(config: RunConfig) -> bool:
    return local_setup.uses_embedded_model(config) and config.model_path is None


def _models(config: RunConfig) -> tuple[str, str, str]:
    if local_setup.uses_embedded_model(config):  # the server lists the file's name as its model
        evolve = Path(config.model_path or local_setup.DEFAULT_MODEL_FILE).stem
    else:
        evolve = config.model or (OPENAI_DEFAULT if not config.base_url else "the endpoint's first model")
    return evolve, config.response_model or evolve, config.judge_model or evolve


def _counts(t: Triple) -> Span:
    """A range of calls: whole calls, so its ends are rounded outwards (3 evolutions at a pass rate of 0.05 or more
    make 3.15 calls or more, yet most often exactly 3)."""
    s = _span(t)
    return s.model_copy(update={"low": float(math.floor(s.low)), "high": float(math.ceil(s.high))})


def _span(t: Triple, digits: int = 1) -> Span:
    lo, mid, hi = sorted(t)[0], t[1], sorted(t)[2]
    return Span(low=round(lo, digits), expected=round(mid, digits), high=round(hi, digits))


def _flat(x: float) -> Triple:
    return (x, x, x)


def _scale(t: Triple, k: float) -> Triple:
    return (t[0] * k, t[1] * k, t[2] * k)


def _plus(t: Triple, x: float) -> Triple:
    return (t[0] + x, t[1] + x, t[2] + x)


def _add(a: Triple, b: Triple) -> Triple:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


def _mul(*ts: Triple) -> Triple:
    lo = mid = hi = 1.0
    for t in ts:
        lo, mid, hi = lo * t[0], mid * t[1], hi * t[2]
    return (lo, mid, hi)


def plan(
    config: RunConfig, profile: Profile, seedset: SeedSet, folder: Path, models: tuple[str, str, str] | None = None
) -> Estimate:
    """The estimate a run starts with: of the rounds its folder has not finished, from the rates its finished
    rounds measured (the method's defaults when it has none). Pays for nothing."""
    from evol.rundir.folder import MANIFEST
    from evol.rundir.manifest import load_manifest

    rates, rounds, seeds_done = None, None, False
    if (folder / MANIFEST).is_file():
        done = load_manifest(folder)
        n = done.counts.rounds_done
        source = f"this run folder's {n} finished round{'s' if n != 1 else ''}"
        rates = measured_rates(config, profile, seedset.seeds, done, folder, source)
        if rates is not None:  # a resumed run gets the finished rounds' calls from its cache
            rounds = range(n + 1, config.rounds + 1)
            seeds_done = True
    return estimate(config, profile, seedset, rates or default_rates(config), models, rounds, seeds_done)


def calls_estimate(
    stage: str,
    prompt_chars: Sequence[int],
    completion: Triple,
    model: str,
    config: RunConfig,
    *,
    source: str,
    tokens_per_char: Triple = (0.2, 0.25, 0.33),
    seconds_per_call: Triple = (0.5, 3.0, 12.0),
) -> Estimate:
    """The estimate of a known list of calls of one stage (``evol score``'s): their number is exact, their tokens
    are their prompts' characters times tokens per character and ``completion`` tokens each."""
    n = float(len(prompt_chars))
    calls = (n, n, n)
    prompt = _scale(tokens_per_char, float(sum(prompt_chars)))
    out = _scale(completion, n)
    money = []
    for i in range(3):
        spent, missing = cost(
            {model: Usage(prompt_tokens=int(prompt[i]), completion_tokens=int(out[i]))}, config.price_table()
        )
        money.append(spent)
    dollars = (money[0], money[1], money[2])
    width = min(config.connections, max(1, len(prompt_chars)))
    return Estimate(
        source=source,
        calls=_span(calls),
        tokens=_span(_add(prompt, out)),
        cost_usd=_span(dollars, 6),
        seconds=_span(_scale(_mul(calls, seconds_per_call), 1 / width)),
        by_stage={
            stage: StageEstimate(
                calls=_span(calls),
                prompt_tokens=_span(prompt),
                completion_tokens=_span(out),
                cost_usd=_span(dollars, 6),
            )
        },
        unpriced_models=missing,
    )
