"""A row of the rules' table: the name(s) a rule records and what it catches."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """The rule(s) that catch one kind of failure, as ``--disable-rule`` names them and the README describes them."""

    names: tuple[str, ...]
    catches: str

    @property
    def name(self) -> str:
        """The one name of a single rule."""
        (only,) = self.names
        return only
