"""Prompt templates: files with named ``${slots}``, checked at start and rendered without re-reading user text."""

from __future__ import annotations

import hashlib
import random
import string
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError, TemplateError

_PACKAGED = Path(__file__).parent / "_prompts"  # where the wheel puts them
_CHECKOUT = Path(__file__).parent.parent / "prompts"  # a source checkout or editable install


def default_prompts_dir() -> Path:
    for candidate in (_PACKAGED, _CHECKOUT):
        if (candidate / "judge.txt").is_file():
            return candidate
    raise ConfigError("The prompt templates are missing from this installation; reinstall evol or pass --prompts-dir.")


@dataclass(frozen=True)
class Prompt:
    """A template with exactly the slots it declares."""

    name: str
    path: str
    text: str
    slots: frozenset[str]

    @classmethod
    def load(cls, path: Path, slots: set[str] | frozenset[str]) -> "Prompt":
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise TemplateError(f"Prompt template {path} does not exist.") from None
        except UnicodeDecodeError:
            raise TemplateError(f"Prompt template {path} is not valid UTF-8.") from None
        return cls.from_text(path.stem, text, slots, str(path))

    @classmethod
    def from_text(cls, name: str, text: str, slots: set[str] | frozenset[str], path: str = "<text>") -> "Prompt":
        tpl = string.Template(text)
        if not tpl.is_valid():
            raise TemplateError(f"Prompt template {path} has a stray '$'; write '$$' for a literal dollar sign.")
        found = set(tpl.get_identifiers())
        missing, unknown = set(slots) - found, found - set(slots)
        if missing:
            raise TemplateError(f"Prompt template {path} lacks the slot(s) {_names(missing)}.")
        if unknown:
            raise TemplateError(f"Prompt template {path} has unknown slot(s) {_names(unknown)}; it may use {_names(slots)}.")
        return cls(name=name, path=path, text=text, slots=frozenset(slots))

    def render(self, **values: str) -> str:
        if set(values) != self.slots:
            raise TemplateError(f"Prompt template {self.path} needs {_names(self.slots)}, got {_names(set(values))}.")
        # one pass over the template: inserted text is never scanned for slots again
        return string.Template(self.text).substitute(values)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Operation:
    name: str
    kind: str
    weight: float
    prompt: Prompt
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def render(self, instruction: str, rng: random.Random) -> str:
        extra = {slot: rng.choice(options) for slot, options in sorted(self.choices.items())}
        return self.prompt.render(instruction=instruction, **extra)


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    operations: tuple[Operation, ...]
    judge: Prompt

    def choose(self, rng: random.Random) -> Operation:
        return rng.choices(self.operations, weights=[op.weight for op in self.operations], k=1)[0]

    def template_hashes(self) -> dict[str, str]:
        hashes = {f"{self.name}/{op.name}": op.prompt.sha256 for op in self.operations}
        hashes["judge"] = self.judge.sha256
        return hashes

    @property
    def leak_markers(self) -> list[str]:
        """The section markers of this profile's templates, which an evolution must never repeat."""
        markers = set()
        for op in self.operations:
            for line in op.prompt.text.splitlines():
                line = line.strip().rstrip(":")
                if line.startswith("#") and line.endswith("#") and len(line) > 2:
                    markers.add(line.lower())
        return sorted(markers)


def load_profile(name: str, prompts_dir: Path | None = None, weights: dict[str, float] | None = None) -> Profile:
    """Load and check a profile's templates; ``weights`` override the profile's defaults by operation name."""
    root = Path(prompts_dir) if prompts_dir else default_prompts_dir()
    folder = root / name
    spec_path = folder / "profile.toml"
    if not spec_path.is_file():
        known = sorted(p.name for p in root.iterdir() if (p / "profile.toml").is_file()) if root.is_dir() else []
        raise ConfigError(f"Unknown profile '{name}' (no {spec_path}); known profiles: {', '.join(known) or 'none'}.")
    try:
        spec = tomllib.loads(spec_path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{spec_path} is not valid TOML: {exc}") from None
    ops_spec = spec.get("operations") or {}
    if not ops_spec:
        raise ConfigError(f"{spec_path} lists no operations.")
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(ops_spec))
    if unknown:
        raise ConfigError(f"operation_weights names unknown operation(s) {', '.join(unknown)}; profile '{name}' has {', '.join(ops_spec)}.")
    operations = []
    for op_name, op in ops_spec.items():
        choices = {k: tuple(map(str, v)) for k, v in (op.get("choices") or {}).items()}
        if any(not v for v in choices.values()):
            raise ConfigError(f"{spec_path}: operation '{op_name}' has an empty list of choices.")
        if "file" not in op:
            raise ConfigError(f"{spec_path}: operation '{op_name}' names no template file.")
        prompt = Prompt.load(folder / op["file"], {"instruction", *choices})
        weight = float(weights.get(op_name, op.get("weight", 1.0)))
        if weight < 0:
            raise ConfigError(f"Operation '{op_name}' has a negative weight.")
        operations.append(Operation(op_name, str(op.get("kind", "in-depth")), weight, prompt, choices))
    if not any(op.weight > 0 for op in operations):
        raise ConfigError(f"Every operation of profile '{name}' has weight 0; give at least one a positive weight.")
    judge_path = folder / "judge.txt" if (folder / "judge.txt").is_file() else root / "judge.txt"
    judge = Prompt.load(judge_path, {"first", "second"})
    return Profile(name=name, description=str(spec.get("description", "")), operations=tuple(operations), judge=judge)


def _names(names) -> str:
    return ", ".join(f"${{{n}}}" for n in sorted(names)) or "none"
