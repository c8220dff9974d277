"""Request-level checks: Accept negotiation, body size, content type and JSON parsing."""
from __future__ import annotations

import json
from typing import Any

from flask import current_app, request

from .http import FhirError

JSON_TYPES = ("application/fhir+json", "application/json")
NDJSON_TYPES = ("application/fhir+ndjson", "application/ndjson")  # bulk export downloads


def check_request() -> None:
    """before_request hook: 413 before reading an oversized body, 406 for a non-JSON Accept."""
    limit = current_app.config["MOCK"].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise FhirError(413, f"Request body larger than {limit} bytes")
    if "Accept" in request.headers and request.headers["Accept"].strip():
        if request.accept_mimetypes.best_match(JSON_TYPES + NDJSON_TYPES) is None:
            raise FhirError(406, "Only application/fhir+json and application/json responses are available")


def read_resource_body() -> dict[str, Any]:
    """The JSON object of a POST/PUT body: 415 for other media types, 400 for bad JSON."""
    if request.mimetype not in JSON_TYPES:
        raise FhirError(415, f"Unsupported Content-Type '{request.content_type or ''}'; send application/fhir+json")
    limit = current_app.config["MOCK"].max_body_bytes
    data = request.get_data(cache=True)  # MAX_CONTENT_LENGTH caps the read (413) for chunked bodies
    if len(data) > limit:
        raise FhirError(413, f"Request body larger than {limit} bytes")
    try:
        body = json.loads(data, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise FhirError(400, f"Request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise FhirError(400, "Request body must be a JSON object (a FHIR resource)")
    return body


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
