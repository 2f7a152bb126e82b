"""The small frozen types that flow through the stages."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Seed(Frozen):
    """One seed instruction, as read from a file (``input`` already appended to ``instruction``)."""

    id: str
    index: int  # position in the seed file: the order every output follows
    instruction: str
    output: str | None = None


class Usage(Frozen):
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: "Usage") -> "Usage":
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


class Node(Frozen):
    """An instruction in the pool: a seed (round 0) or an evolution of one."""

    id: str
    seed_id: str
    seed_index: int
    parent_id: str | None = None
    round: int = 0
    operation: str = "seed"
    instruction: str

    @classmethod
    def from_seed(cls, seed: Seed) -> "Node":
        return cls(id=seed.id, seed_id=seed.id, seed_index=seed.index, instruction=seed.instruction)


Judgement = Literal["equal", "not_equal", "unclear"]


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


class Record(Frozen):
    """A kept instruction with its answer and full lineage."""

    id: str
    seed_id: str
    seed_index: int
    parent_id: str | None
    round: int
    operation: str
    instruction: str
    output: str
    model: str | None = None
    response_model: str | None = None
    usage: dict[str, Usage] = Field(default_factory=dict)
    stripped: tuple[str, ...] = ()  # the chatter, labels, quotes or fence taken off the evolving model's rewrite
    judge: JudgeVerdict | None = None  # None: not judged (a seed, or no_information_gain switched off)


class Verdict(Frozen):
    """What a filter says of a candidate: keep it, or drop it under a named rule."""

    keep: bool
    rule: str | None = None
    detail: str = ""

    @classmethod
    def ok(cls) -> "Verdict":
        return _KEEP

    @classmethod
    def drop(cls, rule: str, detail: str = "") -> "Verdict":
        return cls(keep=False, rule=rule, detail=detail)


_KEEP = Verdict(keep=True)


class Rejection(Frozen):
    """An evolution that did not make it into the dataset, and why."""

    kind: Literal["eliminated", "duplicate", "failed", "skipped"]
    rule: str
    detail: str = ""
    stage: str
    id: str
    seed_id: str
    seed_index: int
    parent_id: str | None = None
    round: int
    operation: str
    instruction: str | None = None
    output: str | None = None
    duplicate_of: str | None = None
    score: float | None = None
    usage: dict[str, Usage] = Field(default_factory=dict)
    stripped: tuple[str, ...] = ()  # what was taken off the rewrite before it was checked
    judge: JudgeVerdict | None = None  # what the judge said, when it was asked
