"""The options of a run, made from RunConfig's fields, and the RunConfig they make.

Every RunConfig field of a plain type (str, int, float, bool, Path, a Literal, or one of them or None) is an
option of its own: ``--field-name``, its type (a Literal's values as choices), its description and its default
as the help. A new field so gets its option without a second edit; LAYOUT only places it in ``--help``. The
few fields shaped otherwise on the command line have their options written below, and FILE_ONLY names the
fields that have none.
"""

from __future__ import annotations

import argparse
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from evol.config import RULES, RunConfig, Sampling, build_config, read_config_file
from evol.errors import ConfigError

Group = argparse._ArgumentGroup

#: the groups of ``--help`` and their options in order: RunConfig fields, or the name of a hand-shaped option
#: below; a field in no group still gets its option, in a last group
LAYOUT: dict[str, tuple[str, ...]] = {
    "input": ("config", "seeds", "instruction_field", "input_field", "limit"),
    "method": (
        "profile",
        "rounds",
        "turns",
        "seed",
        "operation_weights",
        "prompts_dir",
        "disable_rules",
        "keep_judge_unclear",
        "answers",
        "evolve_answers",
        "dedup_threshold",
        "dedup_scorer",
        "sorry_max_words",
        "max_instruction_chars",
    ),
    "backend": (
        "base_url",
        "model",
        "response_model",
        "judge_model",
        "model_path",
        "concurrency",
        "max_concurrency",
        "timeout",
        "max_retries",
        "rpm",
        "tpm",
        "rate_window",
        "budget_usd",
        "batch",
        "batch_poll_seconds",
        "sampling",
    ),
    "output": ("out", "include_seeds"),
}

#: RunConfig fields with no option, and why
FILE_ONLY: dict[str, str] = {
    "api_key": "the key comes from EVOL_API_KEY or OPENAI_API_KEY, never from a file or an argument",
    "leak_phrases": "a list a config file states whole",
    "prices": "a table of prices per model",
    "judge_sampling": "the judge samples on its own terms (temperature 0)",
}

#: metavars the generated options keep from the hand-written ones they replaced
METAVARS = {"answers": "N", "evolve_answers": "K"}

#: what the sampling options say the sampling is for (they set ``sampling`` and ``response_sampling`` alike)
_SAMPLING_PURPOSE = " for evolving and answering"


def add_run_options(p: argparse.ArgumentParser) -> None:
    """The options of a run; ``serve`` and ``optimize`` take them too."""
    fields = RunConfig.model_fields
    placed = {name for names in LAYOUT.values() for name in names}
    rest = tuple(name for name in fields if name not in placed and name not in FILE_ONLY and name not in SHAPED)
    for title, names in {**LAYOUT, "more": rest}.items():
        if not names:
            continue
        g = p.add_argument_group(title)
        for name in names:
            if name in _SHAPERS:
                _SHAPERS[name](g)
            elif name in fields:
                add_field_option(g, name, fields[name])


def add_field_option(g: Group, name: str, field: FieldInfo, purpose: str = "") -> bool:
    """``--name`` for a field of a plain type, its help the field's description and default; False for others."""
    kind = option_type(field.annotation)
    if kind is None:
        return False
    flag = "--" + name.replace("_", "-")
    text = (field.description or "") + purpose + _default_text(field.default)
    if kind is bool:  # unset stays None: the config file or the default decides
        if field.default is True:
            g.add_argument(f"--no-{flag[2:]}", dest=name, action="store_false", default=None, help=text)
        else:
            g.add_argument(flag, action="store_true", default=None, help=text)
        return True
    options: dict[str, Any] = {"metavar": METAVARS.get(name), "help": text}
    if isinstance(kind, tuple):  # a Literal: its values are the choices, the metavar stays the plain name
        options.update(choices=kind, metavar=options["metavar"] or name.upper())
    elif kind is not str:
        options["type"] = kind
    g.add_argument(flag, **options)
    return True


def option_type(annotation: Any) -> type | tuple[Any, ...] | None:
    """The option's type for a field's annotation (a Literal's values, for choices); None when it is no scalar."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            return None
        annotation = args[0]
    if get_origin(annotation) is Literal:
        return get_args(annotation)
    return annotation if annotation in (str, int, float, bool, Path) else None


def _default_text(default: Any) -> str:
    if default is None or default is PydanticUndefined or isinstance(default, bool):
        return ""
    return f" (default {default:g})" if isinstance(default, float) else f" (default {default})"


def _config(g: Group) -> None:
    g.add_argument("--config", type=Path, help="TOML, YAML or JSON file of options (command-line options override it)")


def _operation_weight(g: Group) -> None:
    g.add_argument(
        "--operation-weight",
        action="append",
        metavar="OP=W",
        help="weight of an operation, e.g. mutation=2 (repeatable)",
    )


def _disable_rule(g: Group) -> None:
    g.add_argument(
        "--disable-rule",
        action="append",
        choices=RULES,
        metavar="RULE",
        help=f"switch an elimination rule off (repeatable): {', '.join(RULES)}",
    )


def _response_model(g: Group) -> None:
    g.add_argument(
        "--response-model",
        action="append",
        metavar="MODEL",
        help=f"{RunConfig.model_fields['response_model'].description}; repeat it to draw candidate answers from "
        "several models in turn (see --answers)",
    )


def concurrency_value(text: str) -> int | str:
    """``auto`` or a count of requests, for ``--concurrency``."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes auto or a number of requests, not '{text}'") from None


def _concurrency(g: Group) -> None:
    field = RunConfig.model_fields["concurrency"]
    g.add_argument(
        "--concurrency", type=concurrency_value, metavar="N|auto", help=f"{field.description} (default auto)"
    )


def _include_seeds(g: Group) -> None:
    # on by default; --no-seeds is the name export and score use for the same choice, and --include-seeds stays
    # for commands and scripts written when it was off by default
    text = RunConfig.model_fields["include_seeds"].description
    g.add_argument("--include-seeds", dest="include_seeds", action="store_true", default=None, help=text)
    g.add_argument(
        "--no-seeds",
        dest="include_seeds",
        action="store_false",
        default=None,
        help="leave the seeds out of the dataset",
    )


def _sampling(g: Group) -> None:
    for name, field in Sampling.model_fields.items():
        add_field_option(g, name, field, _SAMPLING_PURPOSE)


_SHAPERS: dict[str, Callable[[Group], None]] = {
    "config": _config,
    "concurrency": _concurrency,
    "operation_weights": _operation_weight,
    "disable_rules": _disable_rule,
    "response_model": _response_model,
    "include_seeds": _include_seeds,
    "sampling": _sampling,
}

#: the RunConfig fields each hand-shaped option sets (by its dest), for config_from_args and the tests
SHAPED: dict[str, str] = {
    "operation_weights": "operation_weight",
    "disable_rules": "disable_rule",
    "response_model": "response_model",
    "response_models": "response_model",
    "include_seeds": "include_seeds",
    "sampling": "temperature",
    "response_sampling": "temperature",
}


def config_from_args(args: argparse.Namespace) -> RunConfig:
    file_values = read_config_file(args.config) if args.config else {}
    # every option named after a RunConfig field is that field (unset options are None and left to the file and
    # the defaults); the fields a hand-shaped option sets (SHAPED) are translated below, even where the option's
    # dest is the field's name (--response-model, once the responder, repeated the candidates' models too)
    given = vars(args)
    overrides = {k: given[k] for k in RunConfig.model_fields if k in given and k not in SHAPED}
    if args.disable_rule:
        overrides["disable_rules"] = args.disable_rule
    if args.response_model:  # once: the responder; more: candidates go round them, the first is the responder
        overrides["response_model"] = args.response_model[0]
        if len(args.response_model) > 1:
            overrides["response_models"] = args.response_model
    if args.include_seeds is not None:
        overrides["include_seeds"] = args.include_seeds
    if args.operation_weight:
        overrides["operation_weights"] = _weights(args.operation_weight)
    sampling = {k: given[k] for k in Sampling.model_fields if given.get(k) is not None}
    if sampling:
        for key in ("sampling", "response_sampling"):
            overrides[key] = {**file_values.get(key, {}), **sampling}
    if "seeds" not in file_values and args.seeds is None:
        raise ConfigError("No seeds given; pass --seeds FILE (or set seeds in the --config file).")
    return build_config(file_values, overrides)


def _weights(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--operation-weight takes OP=WEIGHT, e.g. mutation=2; got '{item}'.") from None
        if not sep:
            raise ConfigError(f"--operation-weight takes OP=WEIGHT, e.g. mutation=2; got '{item}'.")
    return out
