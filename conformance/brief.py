"""Short printing for the objects checks receive as fixtures.

Hypothesis prints every argument of a failing example, pytest fixtures included, and a
dataclass field by field: one falsifying example once printed the whole test population
(4.5 MB). An object that inherits ``Brief`` prints as its ``repr`` there (a line)."""

from __future__ import annotations

from typing import Any


class Brief:
    """Pretty-prints (Hypothesis, IPython) as its one-line ``repr``."""

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


class BriefDict(Brief, dict):  # type: ignore[type-arg]
    """A dict fixture that prints as its size, not its content."""

    def __repr__(self) -> str:
        return f"{{{len(self)} entries: {', '.join(map(str, list(self)[:3]))}{', …' if len(self) > 3 else ''}}}"
