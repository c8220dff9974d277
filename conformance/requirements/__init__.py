"""The requirement catalogue: every rule the suite verifies, with a stable id,
its source sentence, its strength, and one line in our words.

The data lives in the ``*.toml`` files beside this module (one per area) so that
non-programmers can review it; this module only loads and indexes it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources

STRENGTHS = ("SHALL", "SHOULD", "MAY")


@dataclass(frozen=True)
class Requirement:
    id: str
    profile: str
    strength: str
    source: str
    statement: str

    @property
    def mandatory(self) -> bool:
        """Only SHALL-level failures fail a run (unless --strict)."""
        return self.strength == "SHALL"


@cache
def catalogue() -> dict[str, Requirement]:
    """All requirements by id, in file order."""
    found: dict[str, Requirement] = {}
    for entry in sorted(resources.files(__package__).iterdir(), key=lambda p: p.name):
        if not entry.name.endswith(".toml"):
            continue
        data = tomllib.loads(entry.read_text(encoding="utf-8"))
        for raw in data.get("requirement", []):
            req = Requirement(**raw)
            if req.id in found:
                raise ValueError(f"duplicate requirement id {req.id} in {entry.name}")
            if req.strength not in STRENGTHS:
                raise ValueError(f"{req.id}: strength must be one of {STRENGTHS}")
            found[req.id] = req
    return found


def get(requirement_id: str) -> Requirement:
    try:
        return catalogue()[requirement_id]
    except KeyError:
        raise KeyError(f"unknown requirement id {requirement_id!r}") from None
