"""The requirement catalogue: every rule the suite verifies, with a stable id,
its public source, its strength, and one line in our words.

Sources are links a vendor can open (SPEC §6): ``source`` is one https URL (the
Canvas API page of the resource, the HL7 Bulk Data IG page and section, the FHIR R4
page and section, SMART App Launch), ``cites`` says what on that page, ``see_also``
lists further public pages, and ``decision`` gives the reason when the rule is this
kit's own decision where the sources are silent or disagree. Local file names never
appear: a catalogue entry citing one fails to load.

The data lives in the ``*.toml`` files beside this module (one per area) so that
non-programmers can review it; this module only loads and indexes it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
import re
from importlib import resources

STRENGTHS = ("SHALL", "SHOULD", "MAY")
PUBLIC_SOURCE = re.compile(r"https://(docs\.canvasmedical\.com|hl7\.org|build\.fhir\.org|www\.rfc-editor\.org)/\S+$")
LOCAL_NAMES = re.compile(r"\b\d{3}_[0-9a-f]{16}\.txt\b|SPEC\.md|\bSPEC §|\bseeds/|\bseeds? 0\d\d\b", re.IGNORECASE)


@dataclass(frozen=True)
class Requirement:
    id: str
    profile: str
    strength: str
    source: str
    statement: str
    cites: str = ""
    see_also: tuple[str, ...] = ()
    decision: str = ""

    @property
    def mandatory(self) -> bool:
        """Only SHALL-level failures fail a run (unless --strict)."""
        return self.strength == "SHALL"

    @property
    def kit_decision(self) -> bool:
        """True when the rule is this kit's decision (the sources are silent or disagree)."""
        return bool(self.decision)


def check_public(req: Requirement) -> None:
    """A requirement's source must be a public link and no field may name a local file."""
    for url in (req.source, *req.see_also):
        if not PUBLIC_SOURCE.match(url):
            raise ValueError(f"{req.id}: source {url!r} is not a public https link (Canvas docs, hl7.org)")
    for text in (req.cites, req.statement, req.decision):
        if LOCAL_NAMES.search(text):
            raise ValueError(f"{req.id}: names a local file ({LOCAL_NAMES.search(text).group(0)!r})")


@cache
def catalogue() -> dict[str, Requirement]:
    """All requirements by id, in file order."""
    found: dict[str, Requirement] = {}
    for entry in sorted(resources.files("conformance.rules").iterdir(), key=lambda p: p.name):
        if not entry.name.endswith(".toml"):
            continue
        data = tomllib.loads(entry.read_text(encoding="utf-8"))
        for raw in data.get("requirement", []):
            raw["see_also"] = tuple(raw.get("see_also", ()))
            req = Requirement(**raw)
            check_public(req)
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
