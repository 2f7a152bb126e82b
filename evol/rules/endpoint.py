"""What the endpoint itself says of a completion: its content filter withheld it (at either stage)."""

from __future__ import annotations

from evol.models import Verdict
from evol.rules.rule import Rule

CONTENT_FILTERED = Rule(
    ("content_filtered",),
    "the endpoint's content filter withheld the evolution or the answer (`finish_reason=content_filter`)",
)


def content_filtered(finish_reason: str | None, what: str, enabled=lambda rule: True) -> Verdict | None:
    """A drop when the endpoint's content filter withheld ``what`` ("the evolution", "the response")."""
    if enabled(CONTENT_FILTERED.name) and finish_reason == "content_filter":
        return Verdict.drop(
            CONTENT_FILTERED.name, f"the endpoint's content filter withheld {what} (finish_reason=content_filter)"
        )
    return None
