"""Kick-off parameters of a Bulk Data export (SPEC §4; IG export.html#query-parameters).

The query string of a GET kick-off or the ``Parameters`` body of a POST becomes one
``ExportParams`` (stored with the job, read back by the exporter); anything the mock
does not support is a 400 with OperationOutcome unless the client asked for
``Prefer: handling=lenient``, then it is ignored and reported in the manifest's errors.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from flask import request

from .. import dates, limits
from ..deviations import deviates
from ..http import FhirError
from ..payload import read_resource_body
from ..variants import varies

NDJSON = "application/fhir+ndjson"
OUTPUT_FORMATS = (NDJSON, "application/ndjson", "ndjson")   # the three spellings a server SHALL accept
EXTRA_OUTPUT_FORMATS = ("text/csv", "application/x-ndjson")  # variant export-extra-output-formats
TYPE_RE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
ELEMENT_RE = re.compile(r"^([A-Z][A-Za-z]+\.)?[a-z][A-Za-z0-9]*$")
EXPORT_TYPES = ("Patient", "Practitioner", "Condition", "Encounter", "Observation", "Task")  # what an export holds
UNSUPPORTED = ("_typeFilter", "includeAssociatedData")
KNOWN = ("_outputFormat", "_type", "_since", "_until", "_elements", "patient", *UNSUPPORTED)


@dataclass(frozen=True)
class ExportParams:
    types: tuple[str, ...] | None = None        # None: every type
    since: str | None = None                    # UTC isoformat instants (text order is time order)
    until: str | None = None
    elements: tuple[str, ...] | None = None
    patients: tuple[str, ...] | None = None     # POST patient: a subset of the members
    ignored: tuple[str, ...] = ()               # unsupported parameters ignored under handling=lenient
    scope: str = "group"                        # "group" (Group/<id>/$export) or "patients" (Patient/$export)

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> "ExportParams":
        raw = json.loads(text)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})


def _instant(name: str, value: str) -> str:
    try:
        parsed = dates.parse(value)
    except ValueError as exc:
        raise FhirError(400, f"{name} is not a FHIR instant: {exc} ({dates.RANGE_TEXT})") from None
    if not parsed.has_zone:
        raise FhirError(400, f"{name} must be an instant with a time and a time zone: '{value[:64]}'")
    return parsed.start.isoformat()


def pairs_from_query() -> list[tuple[str, str]]:
    return [(k, v) for k, values in request.args.lists() for v in values]


def pairs_from_parameters() -> list[tuple[str, str]]:
    body = read_resource_body()
    if body.get("resourceType") != "Parameters":
        raise FhirError(400, "POST $export expects a Parameters resource")
    parameters = body.get("parameter", [])
    if not isinstance(parameters, list):
        raise FhirError(400, f"Parameters.parameter must be an array, got {type(parameters).__name__}")
    pairs: list[tuple[str, str]] = []
    for p in parameters:
        if not isinstance(p, dict) or not isinstance(p.get("name"), str):
            raise FhirError(400, "every Parameters.parameter needs a name")
        values = [v for k, v in p.items() if k.startswith("value")]
        if len(values) != 1:
            raise FhirError(400, f"parameter {p['name']} needs exactly one value[x]")
        value = values[0]
        if isinstance(value, dict):
            value = value.get("reference", "")
        pairs.append((p["name"], value if isinstance(value, str) else json.dumps(value)))
    return limits.check_params(pairs, "Parameters")


def check_output_format(value: str) -> None:
    """400 unless ``value`` is one of the spellings this server supports."""
    strict = deviates("export-output-format-strict")
    extra = EXTRA_OUTPUT_FORMATS if varies("export-extra-output-formats") else ()
    if value not in OUTPUT_FORMATS + extra or (strict and value != OUTPUT_FORMATS[0]):
        raise FhirError(400, f"_outputFormat '{value}' is not supported; use one of {', '.join(OUTPUT_FORMATS)}")


def parse(pairs: list[tuple[str, str]], post: bool, lenient: bool, members: set[str] | None) -> ExportParams:
    """The job's parameters; 400 naming the first unsupported or malformed one."""
    fields: dict[str, Any] = {}
    ignored: list[str] = []
    types: list[str] = []
    for name, value in pairs:
        if name == "_outputFormat":
            check_output_format(value)
        elif name == "_type":
            for t in (s.strip() for s in value.split(",")):
                if not TYPE_RE.match(t):
                    raise FhirError(400, f"_type '{t}' is not a resource type")
                if t not in EXPORT_TYPES and not deviates("export-unknown-type-accepted"):
                    raise FhirError(400, f"_type '{t}' is not a resource type this server exports (it exports "
                                         f"{', '.join(EXPORT_TYPES)})", "not-supported")
                types.append(t)
        elif name in ("_since", "_until"):
            try:
                fields[name[1:]] = _instant(name, value)
            except FhirError:
                if not deviates("export-malformed-since-accepted"):
                    raise
                fields["types"] = []     # accepted, and nothing exported: an empty manifest
        elif name == "_elements":
            if varies("export-elements-unsupported"):
                raise FhirError(400, "parameter _elements is not supported", "not-supported")
            if varies("export-elements-ignored"):
                continue
            elements = [e.strip() for e in value.split(",") if e.strip()]
            if not elements or not all(ELEMENT_RE.match(e) for e in elements):
                raise FhirError(400, f"_elements '{value}' is not a list of element names")
            fields["elements"] = [e.split(".")[-1] for e in elements]
        elif name == "patient":
            if varies("export-patient-unsupported"):
                raise FhirError(400, "parameter patient is not supported", "not-supported")
            if not post:
                raise FhirError(400, "the patient parameter is only accepted in a POST kick-off")
            fields.setdefault("patients", []).append(value)
        elif name in UNSUPPORTED or name not in KNOWN:
            if not lenient:
                raise FhirError(400, f"parameter {name} is not supported (send Prefer: handling=lenient to ignore it)",
                                "not-supported")
            ignored.append(name)
    if types and "types" not in fields:
        fields["types"] = list(dict.fromkeys(types))
    if "patients" in fields and members is not None:
        strangers = [p for p in fields["patients"] if p not in members]
        if strangers:
            raise FhirError(400, f"patient(s) not members of the group: {', '.join(strangers)}")
    fields["ignored"] = ignored
    return ExportParams(**fields)
