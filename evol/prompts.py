"""Prompt templates: files with named ``${slots}``, checked at start and rendered without re-reading user text."""

from __future__ import annotations

import functools
import hashlib
import itertools
import random
import re
import string
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from evol.errors import ConfigError, TemplateError

#: where a wheel carries the top-level ``prompts/`` folder (pyproject.toml's force-include)
PACKAGED = "_prompts"


def default_prompts_dir() -> Path:
    """The shipped templates: ``prompts/`` at the top of a checkout (an editable install too), or the copy a wheel
    carries inside the package."""
    package = Path(str(resources.files("evol")))
    for folder in (package / PACKAGED, package.parent / "prompts"):
        if (folder / "judge.txt").is_file():
            return folder
    raise ConfigError("The prompt templates are missing from this installation; reinstall evol or pass --prompts-dir.")


@dataclass(frozen=True)
class Prompt:
    """A template with exactly the slots it declares."""

    name: str
    path: str
    text: str
    slots: frozenset[str]

    @classmethod
    def load(cls, path: Path, slots: set[str] | frozenset[str]) -> Prompt:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise TemplateError(f"Prompt template {path} does not exist.") from None
        except UnicodeDecodeError:
            raise TemplateError(f"Prompt template {path} is not valid UTF-8.") from None
        return cls.from_text(path.stem, text, slots, str(path))

    @classmethod
    def from_text(cls, name: str, text: str, slots: set[str] | frozenset[str], path: str = "<text>") -> Prompt:
        tpl = string.Template(text)
        if not tpl.is_valid():
            raise TemplateError(f"Prompt template {path} has a stray '$'; write '$$' for a literal dollar sign.")
        found = set(tpl.get_identifiers())
        missing, unknown = set(slots) - found, found - set(slots)
        if missing:
            raise TemplateError(f"Prompt template {path} lacks the slot(s) {_names(missing)}.")
        if unknown:
            raise TemplateError(
                f"Prompt template {path} has unknown slot(s) {_names(unknown)}; it may use {_names(slots)}."
            )
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
    #: the marker before the final instruction in a structured answer ("#Final Instruction#"); None: the whole answer
    extract: str | None = None

    @property
    def follow_up(self) -> bool:
        """It writes the user's next turn after an answer (slot ``${answer}``) instead of rewriting a turn."""
        return self.kind == FOLLOW_UP

    def render(self, instruction: str, rng: random.Random, answer: str | None = None) -> str:
        extra = {slot: rng.choice(options) for slot, options in sorted(self.choices.items())}
        if self.follow_up:
            extra["answer"] = answer or ""
        return self.prompt.render(instruction=instruction, **extra)


def choice_rng(run_seed: int, seed_id: str, round_no: int, line: str = "") -> random.Random:
    """What draws a pool entry's operation (and its choices) in round ``round_no``: seeded by the run seed, the seed
    id, the round and the line, never by arrival order. The plain line draws what it drew before lines existed."""
    return random.Random(f"{run_seed}:{seed_id}:{round_no}" + (f":{line}" if line else ""))


#: the kind of operation that adds a user turn after the previous answer (``--turns`` above 1)
FOLLOW_UP = "follow-up"


@dataclass(frozen=True)
class Conversation:
    """The templates a conversation needs: the turns so far shown before an evolving or judging prompt, and the
    judge of a follow-up turn."""

    history: Prompt  # slot ${history}
    follow_up_judge: Prompt  # slots ${answer} and ${follow_up}

    def show(self, turns) -> str:
        """The history block for ``turns`` (a conversation's turns before the instruction)."""
        lines = [f"[{t.role.capitalize()}]: {t.content}" for t in turns]
        return self.history.render(history="\n\n".join(lines))


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    operations: tuple[Operation, ...]
    judge: Prompt
    #: (first round, last round or None for every later one, names of the operations eligible then)
    schedule: tuple[tuple[int, int | None, frozenset[str]], ...] = ()
    respond: Prompt | None = None  # what the responder is sent; None: the instruction alone
    conversation: Conversation | None = None
    #: (name, operations) of each line a seed is evolved along, each its own lineage with its own rounds
    #: (WizardMath's downward and upward evolution); empty: one plain line per seed
    lines: tuple[tuple[str, frozenset[str]], ...] = ()

    @property
    def line_names(self) -> tuple[str, ...]:
        """The lines each seed is evolved along: ``("",)``, the one plain line, for a profile that names none."""
        return tuple(name for name, _ in self.lines) or ("",)

    def choose(
        self, rng: random.Random, round_no: int | None = None, follow_up: bool = False, line: str = ""
    ) -> Operation:
        """An operation for ``round_no`` on ``line``; a follow-up one only where ``follow_up`` allows it (an answered
        turn of a conversation shorter than ``--turns``), so a run without follow-ups draws exactly as before they
        existed."""
        ops = tuple(op for op in self.eligible(round_no, line) if follow_up or not op.follow_up)
        if not any(op.weight > 0 for op in ops):
            ops = self.eligible(round_no, line)
        return rng.choices(ops, weights=[op.weight for op in ops], k=1)[0]

    def eligible(self, round_no: int | None, line: str = "") -> tuple[Operation, ...]:
        """The operations of ``line`` for a profile with lines, else those the schedule allows in ``round_no`` (all
        of them where it says nothing)."""
        for name, names in self.lines:
            if name == line:
                return tuple(op for op in self.operations if op.name in names)
        for first, last, names in self.schedule:
            if round_no is not None and first <= round_no and (last is None or round_no <= last):
                return tuple(op for op in self.operations if op.name in names)
        return self.operations

    def response_prompt(self, instruction: str) -> str:
        return self.respond.render(instruction=instruction) if self.respond else instruction

    def template_hashes(self) -> dict[str, str]:
        hashes = {f"{self.name}/{op.name}": op.prompt.sha256 for op in self.operations}
        hashes["judge"] = self.judge.sha256
        if self.respond:
            hashes[f"{self.name}/respond"] = self.respond.sha256
        return hashes

    @functools.cached_property  # read for every evolution: the templates are scanned once
    def leak_markers(self) -> list[str]:
        """What an evolution must never repeat: this profile's section markers ("#rewritten prompt#") and
        the phrases its templates forbid by name."""
        markers = set()
        for op in self.operations:
            for line in op.prompt.text.splitlines():
                line = line.strip().rstrip(":")
                if line.startswith("#") and line.endswith("#") and len(line) > 2:
                    markers.add(line.lower())
            for forbidden in _FORBIDDEN.findall(op.prompt.text):
                markers.update(q.lower() for q in re.findall(r'"([^"\n]{3,60})"', forbidden))
        return sorted(markers)

    @functools.cached_property  # read for every evolution: the templates are scanned once
    def labels(self) -> list[str]:
        """The names of the output sections ("rewritten prompt", "created prompt"), which a model may echo
        as a label before its rewrite: the marker each template ends with."""
        found = set()
        for op in self.operations:
            lines = [ln.strip() for ln in op.prompt.text.strip().splitlines() if ln.strip()]
            last = lines[-1].rstrip(":").strip("#").strip() if lines else ""
            if last and "${" not in last and len(last.split()) <= 4:
                found.add(last.lower())
        return sorted(found)

    @functools.cached_property  # read for every evolution: the templates are scanned once
    def nouns(self) -> list[str]:
        """What this profile's templates call the thing they ask for ("instruction", "question", "problem")."""
        return sorted({m.lower() for op in self.operations for m in _NEW_THING.findall(op.prompt.text)} | {"prompt"})


# "never use the words "given prompt", … in it": the phrases a template forbids
_FORBIDDEN = re.compile(
    r"(?:never|do not|don't)\s+use\s+the\s+words?(.*?)(?:\bin it\b|\.\s)", re.IGNORECASE | re.DOTALL
)
# "Write only the new question": the name of what is asked for
_NEW_THING = re.compile(r"\bwrite\s+only\s+the\s+new\s+(\w+)", re.IGNORECASE)


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
        raise ConfigError(
            f"operation_weights names unknown operation(s) {', '.join(unknown)}; profile '{name}' has {', '.join(ops_spec)}."
        )
    operations = []
    for op_name, op in ops_spec.items():
        choices = {k: tuple(map(str, v)) for k, v in (op.get("choices") or {}).items()}
        if any(not v for v in choices.values()):
            raise ConfigError(f"{spec_path}: operation '{op_name}' has an empty list of choices.")
        if "file" not in op:
            raise ConfigError(f"{spec_path}: operation '{op_name}' names no template file.")
        kind = str(op.get("kind", "in-depth"))
        slots = {"instruction", *choices, *(("answer",) if kind == FOLLOW_UP else ())}
        prompt = Prompt.load(folder / op["file"], slots)
        weight = float(weights.get(op_name, op.get("weight", 1.0)))
        if weight < 0:
            raise ConfigError(f"Operation '{op_name}' has a negative weight.")
        extract = check_extract(op.get("extract"), prompt, f"{spec_path}: operation '{op_name}'")
        operations.append(Operation(op_name, kind, weight, prompt, choices, extract))
    if not any(op.weight > 0 for op in operations):
        raise ConfigError(f"Every operation of profile '{name}' has weight 0; give at least one a positive weight.")
    judge_path = folder / "judge.txt" if (folder / "judge.txt").is_file() else root / "judge.txt"
    judge = Prompt.load(judge_path, {"first", "second"})
    respond = spec.get("respond")
    if respond is not None and not isinstance(respond, str):
        raise ConfigError(f'{spec_path}: respond must name a template file, such as "respond.txt".')
    schedule = _schedule(spec.get("schedule"), operations, spec_path)
    lines = _lines(spec.get("lines"), operations, spec_path)
    if schedule and lines:  # which would decide a line's round? Neither, rather than a rule nobody reads
        raise ConfigError(f"{spec_path} has both [schedule] and [lines]; a profile takes one of them.")
    return Profile(
        name=name,
        description=str(spec.get("description", "")),
        operations=tuple(operations),
        judge=judge,
        schedule=schedule,
        lines=lines,
        respond=Prompt.load(folder / respond, {"instruction"}) if respond else None,
        conversation=_conversation(folder, root),
    )


def _conversation(folder: Path, root: Path) -> Conversation | None:
    """The conversation templates (a profile's own, or the shared ones); None where a prompts folder has none."""

    def find(name: str) -> Path | None:
        return next((f for f in (folder / name, root / name) if f.is_file()), None)

    history, judge = find("history.txt"), find("follow_up_judge.txt")
    if history is None or judge is None:
        return None
    return Conversation(Prompt.load(history, {"history"}), Prompt.load(judge, {"answer", "follow_up"}))


def check_extract(marker, prompt: Prompt, where: str) -> str | None:
    """An operation's ``extract`` marker: one short line that its template itself shows the model, or None."""
    if marker is None:
        return None
    if not isinstance(marker, str) or not marker.strip() or "\n" in marker or len(marker) > 80 or "$" in marker:
        raise TemplateError(
            f"{where}: extract must be one line of text under 80 characters, such as "
            f'"#Final Instruction#", not {marker!r}.'
        )
    if marker.strip().casefold() not in prompt.text.casefold():
        raise TemplateError(
            f"{where}: extract marker '{marker.strip()}' does not appear in {prompt.path}, "
            f"so the model would never be asked to write it."
        )
    return marker.strip()


def _schedule(spec, operations: list[Operation], path: Path) -> tuple[tuple[int, int | None, frozenset[str]], ...]:
    """``[schedule]`` of a profile.toml: rounds ("1", "2-3", "4-") to the operations or kinds eligible in them."""
    if spec is None:
        return ()
    if not isinstance(spec, dict) or not spec:
        raise ConfigError(
            f'{path}: schedule must be a table that maps rounds ("1", "2-3", "4-") to lists of operations or kinds.'
        )
    kinds = _kinds(operations)
    entries = []
    for key, value in spec.items():
        m = re.fullmatch(r"\s*(\d+)\s*(?:(-)\s*(\d+)?)?\s*", key)
        first = int(m.group(1)) if m else 0
        last = (int(m.group(3)) if m.group(3) else None) if m and m.group(2) else first
        if not m or first < 1 or (last is not None and last < first):
            raise ConfigError(
                f'{path}: schedule key \'{key}\' is not a round or a range of rounds such as "1", "2-3" or "4-".'
            )
        names = _named(value, operations, kinds, f"{path}: schedule round(s) '{key}'", "downward")
        if not any(op.weight > 0 for op in operations if op.name in names):
            raise ConfigError(f"{path}: every operation eligible in schedule round(s) '{key}' has weight 0.")
        entries.append((first, last, names, key))
    entries.sort(key=lambda e: e[0])
    for (_, last, _, key), (first, _, _, next_key) in itertools.pairwise(entries):
        if last is None or last >= first:
            raise ConfigError(f"{path}: schedule rounds '{key}' and '{next_key}' overlap.")
    return tuple((first, last, names) for first, last, names, _ in entries)


def _kinds(operations: list[Operation]) -> dict[str, set[str]]:
    """Each kind of operation to the names of its operations: what [schedule] and [lines] may name besides names."""
    kinds: dict[str, set[str]] = {}
    for op in operations:
        kinds.setdefault(op.kind, set()).add(op.name)
    return kinds


def _named(value, operations: list[Operation], kinds: dict[str, set[str]], where: str, example: str) -> frozenset[str]:
    """The operations a list of operation names or kinds in a profile.toml names; ConfigError in one sentence
    for anything else."""
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f'{where} must list operation names or kinds, such as ["{example}"].')
    unknown = sorted(v for v in value if v not in kinds and v not in {op.name for op in operations})
    if unknown:
        raise ConfigError(
            f"{where} names unknown operation(s) or kind(s) {', '.join(unknown)}; "
            f"the profile has {', '.join(op.name for op in operations)} of kinds {', '.join(sorted(kinds))}."
        )
    return frozenset(n for v in value for n in kinds.get(v, {v}))


def _lines(spec, operations: list[Operation], path: Path) -> tuple[tuple[str, frozenset[str]], ...]:
    """``[lines]`` of a profile.toml: each line's name to the operations or kinds it evolves with."""
    if spec is None:
        return ()
    if not isinstance(spec, dict) or not spec:
        raise ConfigError(
            f'{path}: lines must be a table that maps line names to lists of operations or kinds, such as upward = ["upward"].'
        )
    kinds = _kinds(operations)
    out = []
    for key, value in spec.items():
        if not re.fullmatch(r"[a-z][a-z0-9_]*", key):
            raise ConfigError(
                f"{path}: line name '{key}' must be lower-case letters, digits and _, such as \"upward\"."
            )
        names = _named(value, operations, kinds, f"{path}: line '{key}'", "upward")
        # weight 0 (--operation-weight): line off; a follow-up alone does not keep it on, as it only adds turns
        if any(op.weight > 0 and not op.follow_up for op in operations if op.name in names):
            out.append((key, names))
    if not out:
        raise ConfigError(f"{path}: every operation of every line ({', '.join(spec)}) has weight 0.")
    return tuple(out)


def _names(names) -> str:
    return ", ".join(f"${{{n}}}" for n in sorted(names)) or "none"
