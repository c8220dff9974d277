"""Validation beyond structure: FHIR R4 resources against HL7's JSON Schema and core invariants.

``validate(resource)`` lists every :class:`Problem` (element path, rule, message; the line
number when given). ``schema`` loads and compiles the shipped R4 schema, ``invariants``
holds the declarative invariant table, ``validator`` ties them together.
"""

from .validator import INVARIANT, SCHEMA, Problem, ValidationLog, validate

__all__ = ["INVARIANT", "SCHEMA", "Problem", "ValidationLog", "validate"]
