"""The small frozen types that flow through the stages."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Models(Frozen):
    """The model each stage calls: what the backend resolved from the options and the endpoint."""

    evolve: str
    respond: str
    judge: str


Role = Literal["system", "user", "assistant"]


class Turn(Frozen):
    """One message of a conversation."""

    role: Role
    content: str


#: the turns before an instruction: a system message and earlier user/assistant turns; () for a single instruction
History = tuple[Turn, ...]


def user_turns(history: History) -> int:
    """How many user turns ``history`` holds."""
    return sum(t.role == "user" for t in history)


def alpaca_row(instruction: str, output: str, history: History) -> dict[str, Any]:
    """A row of dataset.json and of the alpaca export: instruction and output, and for a conversation its system
    message and earlier [user, assistant] pairs (the ``system``/``history`` fields of LLaMA-Factory's alpaca)."""
    row: dict[str, Any] = {"instruction": instruction, "output": output}
    if history:
        system = [t.content for t in history if t.role == "system"]
        turns = [t for t in history if t.role != "system"]
        if system:
            row["system"] = system[0]
        pairs: list[list[str]] = []
        user = ""
        for t in turns:  # they alternate; a conversation that opens with the assistant pairs it with ""
            if t.role == "user":
                user = t.content
            else:
                pairs.append([user, t.content])
                user = ""
        row["history"] = pairs
    return row


def chat_turns(history: History, instruction: str, system: str | None = None) -> list[Turn]:
    """A conversation up to its instruction, as a chat model is shown it: its own system message (else ``system``),
    the earlier turns, the instruction."""
    own = [t for t in history if t.role == "system"]
    head = own or ([Turn(role="system", content=system)] if system else [])
    return [*head, *(t for t in history if t.role != "system"), Turn(role="user", content=instruction)]


def asked(history: History, instruction: str) -> str:
    """What dedup compares: the instruction, after every turn of its conversation before it (the instruction alone
    for a single one, as before conversations)."""
    return "\n\n".join([*(t.content for t in history), instruction]) if history else instruction


class Seed(Frozen):
    """One seed instruction, as read from a file (``input`` already appended to ``instruction``); a conversation
    seed's last user turn, with the turns before it as ``history`` and the reply to it as ``output``."""

    id: str
    index: int  # position in the seed file: the order every output follows
    instruction: str
    output: str | None = None
    history: History = ()


class Usage(Frozen):
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
        )


class Completion(Frozen):
    """One chat completion, reduced to what the pipeline uses."""

    text: str
    finish_reason: str | None = None
    usage: Usage = Usage()
    model: str = ""
    cached: bool = False  # answered from the run's call cache, not paid again


class Lineage(Frozen):
    """Where an instruction comes from: its id, its seed (and the seed's place in the seed file), its parent, and
    the round and operation that made it. A pool entry, a kept record and a rejection all carry it."""

    id: str
    seed_id: str
    seed_index: int
    parent_id: str | None = None
    round: int = 0
    operation: str = "seed"
    #: the line of a profile with several (math: "downward", "upward"), each its own lineage from the seed;
    #: "": the one plain line (and a seed itself, which every line starts from)
    line: str = ""

    @classmethod
    def of_seed(cls, seed: Seed) -> Lineage:
        return Lineage(id=seed.id, seed_id=seed.id, seed_index=seed.index)

    def lineage(self) -> dict[str, Any]:
        """The lineage fields, to build another kind of entry with the same lineage (``Record(**x.lineage(), ...)``)."""
        return {name: getattr(self, name) for name in LINEAGE}

    def rejected(self, kind: RejectionKind, rule: str, detail: str, stage: str, **fields: Any) -> Rejection:
        """This entry as a rejection under ``rule``, with ``fields`` (instruction, output, usage, …): the one way a
        Rejection is made."""
        return Rejection(**self.lineage(), kind=kind, rule=rule, detail=detail, stage=stage, **fields)


LINEAGE = tuple(Lineage.model_fields)


class Node(Lineage):
    """An instruction in the pool: a seed (round 0) or an evolution of one; in a conversation, its last user turn
    with the turns before it, and (where a follow-up turn may be added) the answer to it."""

    instruction: str
    history: History = ()
    output: str | None = None  # kept only when follow-up turns are on (``turns`` > 1): they build on it

    @classmethod
    def from_seed(cls, seed: Seed, with_output: bool = False, line: str = "") -> Node:
        """The seed as the first entry of ``line``'s lineage."""
        output = seed.output if with_output else None
        lineage = Lineage.of_seed(seed).lineage() | {"line": line}
        return cls(**lineage, instruction=seed.instruction, history=seed.history, output=output)


#: the equality judge's verdicts, and the follow-up judge's ("builds" on the previous answer, or "ignores" it)
Judgement = Literal["equal", "not_equal", "unclear", "builds", "ignores"]


class JudgeAnswer(Frozen):
    """One answer of the equality judge: its raw text, how it ended, and what it was read as."""

    text: str
    finish_reason: str | None = None
    judgement: Judgement


class JudgeVerdict(Frozen):
    """The equality judge on one evolution: the verdict that decided, and every answer (the retry of an unclear one too)."""

    judgement: Judgement
    answers: tuple[JudgeAnswer, ...]

    @property
    def retried(self) -> bool:
        return len(self.answers) > 1


Ranking = Literal["scored", "unclear"]


#: fields a record, rejection or candidate dumps only when they hold something, so a run that never needed them
#: writes the same records.jsonl as before they existed
_ONLY_WHEN_SET = ("candidates", "cut_answers", "history", "judge_model", "line")


class _Sparse(Frozen):
    """Leaves the fields of ``_ONLY_WHEN_SET`` out of the dump while they are empty."""

    @model_serializer(mode="wrap")
    def _drop_no_candidates(self, handler):
        data = handler(self)
        for name in _ONLY_WHEN_SET:
            if not getattr(self, name, None):
                data.pop(name, None)
        return data


class Candidate(_Sparse):
    """One candidate answer to an instruction: who wrote it, how, whether it passed, and what the judge gave it."""

    key: str  # its place in the call cache: "0", "1", ... for first answers, "e1", "e2", ... for evolutions
    text: str
    model: str
    origin: str  # "sample" (another draw), "model" (another responder) or "evolved:<direction>"
    finish_reason: str | None = None
    rule: str | None = None  # the response rule that dropped it; None: it passed them all
    score: float | None = None  # the ranking judge's 1-10; None: not ranked, or no readable score twice
    reason: str = ""  # the judge's short reason
    ranking: Ranking | None = None  # None: never ranked (dropped by a rule, or the only answer)
    rank_answers: tuple[str, ...] = ()  # the judge's raw answers (two when the first was unreadable)
    best: bool = False  # the one that became the row's output
    cut_answers: tuple[str, ...] = ()  # this answer cut at max_tokens, asked again with more room


class Record(Lineage, _Sparse):
    """A kept instruction with its answer and full lineage (in a conversation: its last user turn, the answer to
    it, and the turns before them as ``history``)."""

    instruction: str
    output: str
    history: History = ()
    model: str | None = None
    response_model: str | None = None
    usage: dict[str, Usage] = Field(default_factory=dict)
    stripped: tuple[str, ...] = ()  # the chatter, labels, quotes or fence taken off the evolving model's rewrite
    judge: JudgeVerdict | None = None  # None: not judged (a seed, or no_information_gain switched off)
    judge_model: str | None = None  # the model that judged it (equality, ranking); None: no judge was asked
    candidates: tuple[Candidate, ...] = ()  # every candidate answer, when there was more than one plain answer
    cut_answers: tuple[str, ...] = ()  # an answer cut at max_tokens that a longer one replaced

    def rejected(self, kind: RejectionKind, rule: str, detail: str, stage: str, **fields: Any) -> Rejection:
        """This kept record rejected after all (a duplicate): every field a rejection has too goes along (its texts,
        usage, verdict, candidates), besides the lineage."""
        carried = {name: getattr(self, name) for name in _CARRIED}
        return super().rejected(kind, rule, detail, stage, **(carried | fields))


class Verdict(Frozen):
    """What a filter says of a candidate: keep it, or drop it under a named rule."""

    keep: bool
    rule: str | None = None
    detail: str = ""

    @classmethod
    def ok(cls) -> Verdict:
        return _KEEP

    @classmethod
    def drop(cls, rule: str, detail: str = "") -> Verdict:
        return cls(keep=False, rule=rule, detail=detail)

    @property
    def named_rule(self) -> str:
        """The rule a drop names (read only when ``keep`` is false)."""
        if self.rule is None:
            raise ValueError("a kept verdict names no rule")
        return self.rule


_KEEP = Verdict(keep=True)

RejectionKind = Literal["eliminated", "duplicate", "failed", "skipped"]


class Rejection(Lineage, _Sparse):
    """An evolution that did not make it into the dataset, and why."""

    kind: RejectionKind
    rule: str
    detail: str = ""
    stage: str
    instruction: str | None = None
    output: str | None = None
    history: History = ()  # the turns before ``instruction``, in a conversation
    duplicate_of: str | None = None
    score: float | None = None
    usage: dict[str, Usage] = Field(default_factory=dict)
    stripped: tuple[str, ...] = ()  # what was taken off the rewrite before it was checked
    judge: JudgeVerdict | None = None  # what the judge said, when it was asked
    judge_model: str | None = None  # the model that judged it, when one was asked
    candidates: tuple[Candidate, ...] = ()  # the candidate answers, none of which passed
    cut_answers: tuple[str, ...] = ()  # an answer cut at max_tokens, asked again with more room


#: what one attempt comes to: a kept record (before dedup) or a rejection with its rule
Outcome = Record | Rejection

#: what a record and a rejection both hold beyond the lineage: what a record rejected after all carries over
_CARRIED = tuple(n for n in Record.model_fields if n in Rejection.model_fields and n not in LINEAGE)
