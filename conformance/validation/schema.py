"""The official FHIR R4 JSON Schema, loaded once and compiled per resource type.

The schema (package data ``data/fhir.schema.json.gz``, provenance in ``data/SOURCE.md``)
is one draft-06 document whose ``definitions`` hold every resource and datatype. A
resource is validated against its own definition (``{"$ref": "#/definitions/Patient"}``
beside the full ``definitions``), never against the top-level ``oneOf`` over all 146
resource types.

Two validators per type, both built lazily and cached for the process:

- a ``jsonschema.Draft6Validator`` (over :func:`inlined_definitions`) lists *every* error with
  its path; it alone judges the first :data:`FAST_AFTER` resources of a type (the reads of a
  run, small exports: no compile cost);
- past that, a ``fastjsonschema`` function (generated Python code, compiled once in a
  fraction of a second to a second, then several times faster than ``jsonschema``) answers
  "valid or not" for every further resource, and ``jsonschema`` runs only for the (rare)
  ones it refuses, to list their errors.

``ResourceList`` (what ``contained``, ``Bundle.entry.resource``, ``Bundle.entry.response.outcome``
and ``Parameters.parameter.resource`` refer to) is a ``oneOf`` over every resource type: it is
replaced by "an object with a resourceType", and :func:`nested_resources` hands those nested
resources back so each is validated against its own type. That keeps compilation cheap (a
fraction of a second per type instead of 40 s) and error messages precise.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import Any, Callable

import fastjsonschema
import jsonschema

SCHEMA_FILE = "fhir.schema.json.gz"
SCHEMA_ID = "http://hl7.org/fhir/json-schema/4.0"
SCHEMA_SHA256 = "15b9548af6412c44faaa411456e0652542de286fd1c58ef882b09bdc8947909d"  # uncompressed, see SOURCE.md
FAST_AFTER = 5000  # resources of one type judged by jsonschema alone before fastjsonschema is compiled
NESTED_STUB = {"type": "object", "required": ["resourceType"], "properties": {"resourceType": {"type": "string"}}}


def schema_bytes() -> bytes:
    """The uncompressed schema file, as shipped."""
    data = resources.files(__package__).joinpath("data", SCHEMA_FILE).read_bytes()
    return gzip.decompress(data)


@cache
def document() -> dict[str, Any]:
    """The schema document with ``ResourceList`` stubbed (see the module docstring)."""
    schema = json.loads(schema_bytes())
    if schema.get("id") != SCHEMA_ID:
        raise RuntimeError(f"{SCHEMA_FILE} is not the FHIR R4 schema (id {schema.get('id')!r})")
    schema["definitions"]["ResourceList"] = NESTED_STUB
    return schema


@cache
def resource_types() -> frozenset[str]:
    """The resource types the schema defines (its discriminator mapping)."""
    return frozenset(document()["discriminator"]["mapping"])


def _root(resource_type: str) -> dict[str, Any]:
    doc = document()
    return {"$schema": doc["$schema"], "$ref": f"#/definitions/{resource_type}", "definitions": doc["definitions"]}


@cache
def fast_validator(resource_type: str) -> Callable[[Any], Any]:
    """A generated validator for one type: raises ``JsonSchemaValueException`` at the first error."""
    return fastjsonschema.compile(_root(resource_type))


@cache
def full_validator(resource_type: str) -> jsonschema.Draft6Validator:
    """A validator for one type that lists every error (draft-06, as the schema declares)."""
    return jsonschema.Draft6Validator(inlined_definitions()[resource_type])


@cache
def inlined_definitions() -> dict[str, Any]:
    """The definitions with every ``{"$ref": "#/definitions/X", ...}`` replaced by definition X
    itself (a shared, cyclic graph of dicts). In draft-06 a ``$ref`` ignores its siblings, so
    this is the same schema; jsonschema then descends without resolving a reference at each
    step, which makes it about three times faster."""
    definitions = json.loads(json.dumps(document()["definitions"]))   # a private copy to rewire
    prefix = "#/definitions/"

    def rewire(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in list(items):
            if isinstance(value, dict) and str(value.get("$ref", "")).startswith(prefix):
                node[key] = definitions[value["$ref"][len(prefix):]]
            else:
                rewire(value)

    for definition in list(definitions.values()):
        rewire(definition)
    return definitions


def errors(resource: dict[str, Any]) -> list[tuple[list[str | int], str, str]]:
    """(path within the resource, schema keyword, message) of every schema error; [] when valid.

    ``resource["resourceType"]`` must be one of :func:`resource_types`."""
    rtype = resource["resourceType"]
    first: list[tuple[list[str | int], str, str]] = []
    _seen[rtype] = seen = _seen.get(rtype, 0) + 1
    if seen > FAST_AFTER:
        try:
            fast_validator(rtype)(resource)
            return []
        except fastjsonschema.JsonSchemaValueException as exc:
            first = [(list(exc.path or [])[1:], str(exc.rule or "schema"), str(exc.message))]
    found = [(list(e.absolute_path), str(e.validator), e.message)
             for e in full_validator(rtype).iter_errors(resource)]
    return found or first


_seen: dict[str, int] = {}   # resources validated per type in this process (see FAST_AFTER)


def nested_resources(resource: dict[str, Any]) -> Iterator[tuple[list[str | int], Any]]:
    """(path, value) of each resource held inside ``resource`` (the places the schema's
    ``ResourceList`` stood): contained[], Bundle.entry[].resource and .response.outcome,
    Parameters.parameter[].resource (and their parts)."""
    for i, item in enumerate(_list(resource.get("contained"))):
        yield ["contained", i], item
    rtype = resource.get("resourceType")
    if rtype == "Bundle":
        for i, entry in enumerate(_list(resource.get("entry"))):
            if isinstance(entry, dict):
                if "resource" in entry:
                    yield ["entry", i, "resource"], entry["resource"]
                response = entry.get("response")
                if isinstance(response, dict) and "outcome" in response:
                    yield ["entry", i, "response", "outcome"], response["outcome"]
    elif rtype == "Parameters":
        yield from _parameter_resources(resource.get("parameter"), ["parameter"])


def _parameter_resources(parameters: Any, path: list[str | int]) -> Iterator[tuple[list[str | int], Any]]:
    for i, parameter in enumerate(_list(parameters)):
        if isinstance(parameter, dict):
            if "resource" in parameter:
                yield [*path, i, "resource"], parameter["resource"]
            yield from _parameter_resources(parameter.get("part"), [*path, i, "part"])


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
