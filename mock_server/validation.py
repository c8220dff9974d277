"""Hand-written structural validation of FHIR R4 JSON: known elements, JSON types, no empty strings.

Only the datatypes the mock's resources use are described; everything failing here is a 400.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Union

from . import dates
from .http import FhirError

REFERENCE_RE = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-\.]{1,64})$")  # a literal Type/id reference
Spec = Union[str, dict[str, Any], list[Any]]  # primitive name | complex type name | {element: Spec} | [Spec]

PRIMITIVES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "code": lambda v: isinstance(v, str) and re.fullmatch(r"[^\s]+(\s[^\s]+)*", v) is not None,
    "id": lambda v: isinstance(v, str) and re.fullmatch(r"[A-Za-z0-9\-\.]{1,64}", v) is not None,
    "uri": lambda v: isinstance(v, str) and not re.search(r"\s", v),
    "dateTime": dates.is_valid,  # the one date parser: a real calendar date, years 0001-9999
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "unsignedInt": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
    "decimal": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}
PRIMITIVES["instant"] = PRIMITIVES["dateTime"]
PRIMITIVES["canonical"] = PRIMITIVES["uri"]
PRIMITIVES["markdown"] = PRIMITIVES["string"]
PRIMITIVES["date"] = PRIMITIVES["dateTime"]
NUMERIC = {"integer", "unsignedInt", "decimal"}

# Complex datatypes; id/extension are allowed on every complex element (see _object).
TYPES: dict[str, dict[str, Spec]] = {
    "Coding": {"system": "uri", "version": "string", "code": "code", "display": "string", "userSelected": "boolean"},
    "CodeableConcept": {"coding": ["Coding"], "text": "string"},
    "Period": {"start": "dateTime", "end": "dateTime"},
    "Quantity": {"value": "decimal", "comparator": "code", "unit": "string", "system": "uri", "code": "code"},
    "Range": {"low": "Quantity", "high": "Quantity"},
    "Identifier": {
        "use": "code", "type": "CodeableConcept", "system": "uri", "value": "string",
        "period": "Period", "assigner": "Reference",
    },
    "Reference": {"reference": "string", "type": "uri", "identifier": "Identifier", "display": "string"},
    "Meta": {
        "versionId": "id", "lastUpdated": "instant", "source": "uri", "profile": ["canonical"],
        "security": ["Coding"], "tag": ["Coding"],
    },
    "Narrative": {"status": "code", "div": "string"},
    "Extension": {
        "url": "uri", "extension": ["Extension"],
        "valueString": "string", "valueBoolean": "boolean", "valueInteger": "integer",
        "valueDecimal": "decimal", "valueCode": "code", "valueUri": "uri", "valueDateTime": "dateTime",
        "valueCoding": "Coding", "valueCodeableConcept": "CodeableConcept", "valueReference": "Reference",
        "valueIdentifier": "Identifier", "valuePeriod": "Period", "valueQuantity": "Quantity",
    },
}
RESOURCE_BASE: dict[str, Spec] = {
    "resourceType": "string", "id": "id", "meta": "Meta", "implicitRules": "uri", "language": "code",
    "text": "Narrative", "extension": ["Extension"], "modifierExtension": ["Extension"],
}


class Validator:
    """Walks a JSON value against a Spec; the three lenient flags exist for deviations."""

    def __init__(self, allow_unknown: bool = False, allow_empty: bool = False, coerce_strings: bool = False):
        self.allow_unknown = allow_unknown
        self.allow_empty = allow_empty
        self.coerce_strings = coerce_strings

    def resource(self, body: dict[str, Any], elements: dict[str, Spec], path: str) -> dict[str, Any]:
        try:
            return self._object(body, {**RESOURCE_BASE, **elements}, path)
        except RecursionError:
            raise FhirError(400, "Resource is nested too deeply") from None

    def _value(self, value: Any, spec: Spec, path: str) -> Any:
        if value is None:
            raise FhirError(400, f"Element '{path}' must not be null")
        if isinstance(spec, list):
            if not isinstance(value, list):
                raise FhirError(400, f"Element '{path}' must be an array")
            return [self._value(v, spec[0], f"{path}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, list):
            raise FhirError(400, f"Element '{path}' must not be an array")
        if isinstance(spec, dict):
            return self._object(value, spec, path)
        if spec in TYPES:
            return self._object(value, TYPES[spec], path)
        return self._primitive(value, spec, path)

    def _primitive(self, value: Any, kind: str, path: str) -> Any:
        if self.coerce_strings and isinstance(value, str):
            value = _coerce(value, kind)
        if isinstance(value, str) and value == "" and kind not in ("boolean", *NUMERIC):
            if self.allow_empty:
                return value
            raise FhirError(400, f"Element '{path}' must not be an empty string")
        if isinstance(value, str) and not _encodable(value):
            raise FhirError(400, f"Element '{path}' is not valid Unicode")
        if not PRIMITIVES[kind](value):
            raise FhirError(400, f"Element '{path}' is not a valid {kind}")
        return value

    def _object(self, value: Any, elements: dict[str, Spec], path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise FhirError(400, f"Element '{path}' must be an object")
        allowed = {"id": "string", "extension": ["Extension"], "modifierExtension": ["Extension"], **elements}
        out: dict[str, Any] = {}
        for key, item in value.items():
            spec = allowed.get(key)
            if spec is None:
                if self.allow_unknown:
                    out[key] = item
                    continue
                raise FhirError(400, f"Unknown element '{path}.{key}'")
            out[key] = self._value(item, spec, f"{path}.{key}")
        return out


def _coerce(value: str, kind: str) -> Any:
    """Lenient string-to-primitive conversion, used only by the wrong-json-types deviation."""
    if kind == "boolean" and value in ("true", "false"):
        return value == "true"
    if kind in NUMERIC:
        try:
            return int(value) if re.fullmatch(r"-?\d+", value) else float(value)
        except ValueError:
            return value
    return value


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from JSON escapes
        return False
    return True
