"""``Prefer: return=minimal|representation|OperationOutcome`` on create and update (FHIR R4 http.html#ins-ret).

Without the header the body stays empty, as Canvas answers (SPEC §1, §7).
"""
from __future__ import annotations

from typing import Any, Callable

from flask import Response, request

from .outcomes import fhir_response, operation_outcome


def return_preference() -> str | None:
    """'minimal', 'representation' or 'OperationOutcome' when the request asks for one, else None."""
    for part in request.headers.get("Prefer", "").replace(";", ",").split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "return":
            value = value.strip().strip('"')
            for known in ("minimal", "representation", "OperationOutcome"):
                if value.lower() == known.lower():
                    return known
    return None


def written(status: int, headers: dict[str, str], representation: Callable[[], dict[str, Any]],
            what: str) -> Response:
    """The answer to a successful create/update, shaped by the client's return preference."""
    wanted = return_preference()
    if wanted == "representation":
        return fhir_response(representation(), status, headers)
    if wanted == "OperationOutcome":
        return fhir_response(operation_outcome("informational", what, "information"), status, headers)
    return fhir_response(None, status, headers)
