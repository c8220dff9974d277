"""The mock's HTTP helpers: errors as OperationOutcome, resource headers, Prefer, 404s.

Every view answers through these, so an error body, an ETag or a ``Prefer: return=``
is decided in one place: ``FhirError`` anywhere in a view becomes an OperationOutcome
(``register_error_handlers``: no error escapes as HTML or a bare 500).
"""
from __future__ import annotations

import json
import logging
import sqlite3
from typing import Any, Callable

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException
from werkzeug.http import http_date

from . import db
from .deviations import deviates
from .variants import varies

FHIR_JSON = "application/fhir+json"
log = logging.getLogger(__name__)

ISSUE_CODES: dict[int, str] = {
    400: "invalid",
    401: "unknown",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    412: "conflict",
    413: "too-long",
    415: "not-supported",
    422: "business-rule",
}
DEFAULT_TEXT: dict[int, str] = {401: "Authentication failed", 403: "Authorization failed"}


class FhirError(Exception):
    """Raised anywhere in a view to answer with an OperationOutcome."""

    def __init__(self, status: int, text: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(text)
        self.status = status
        self.text = text
        self.code = code or ISSUE_CODES.get(status, "exception" if status >= 500 else "invalid")
        self.headers = headers or {}


def fhir_response(body: Any = None, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """JSON response with the FHIR media type; ``None`` body means empty."""
    data = "" if body is None else json.dumps(body)
    return Response(data, status=status, headers=headers or {}, content_type=FHIR_JSON)


def operation_outcome(code: str, text: str, severity: str = "error") -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "details": {"text": text}}
    if varies("outcome-diagnostics-only"):
        issue = {"severity": severity, "code": code, "diagnostics": text}
    issues = [issue]
    if varies("outcome-information-first"):
        issues.insert(0, {"severity": "information", "code": "informational",
                          "diagnostics": "request processed by fhir-mock"})
    return {"resourceType": "OperationOutcome", "issue": issues}


def error_response(status: int, text: str, code: str | None = None, headers: dict[str, str] | None = None) -> Response:
    code = code or ISSUE_CODES.get(status, "exception" if status >= 500 else "invalid")
    if deviates("errors-not-operationoutcome"):
        return fhir_response({"error": text}, status, headers)
    return fhir_response(operation_outcome(code, text), status, headers)


def _http_text(exc: HTTPException) -> str:
    if exc.code == 404:
        return f"Unknown route {request.method} {request.path}"
    if exc.code == 405:
        return f"Method {request.method} not supported on {request.path}"
    if exc.code == 413:
        return "Request body too large"
    return DEFAULT_TEXT.get(exc.code or 500, exc.description or exc.name)


def register_error_handlers(app: Flask) -> None:
    """Every failure, including unknown routes and methods, becomes an OperationOutcome."""

    @app.errorhandler(FhirError)
    def _fhir(exc: FhirError) -> Response:
        return error_response(exc.status, exc.text, exc.code, exc.headers)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        headers = {}
        if status == 405 and getattr(exc, "valid_methods", None):
            headers["Allow"] = ", ".join(exc.valid_methods)
        return error_response(status, _http_text(exc), headers=headers)

    @app.errorhandler(Exception)
    def _any(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, f"Internal server error: {type(exc).__name__}", "exception")


def not_found(rtype: str, rid: str) -> FhirError:
    """The error for an unknown id (404 not-found, or 400 under the not-found-as-400 deviation)."""
    text = f"Unknown {rtype} resource '{rid}'"
    if deviates("not-found-as-400"):
        return FhirError(400, text, "invalid")
    return FhirError(404, text)


def get_or_404(conn: sqlite3.Connection, rtype: str, rid: str) -> db.Row:
    """The stored row, or the unknown-id error."""
    row = db.get(conn, rtype, rid)
    if row is None:
        raise not_found(rtype, rid)
    return row


def resource_headers(row: db.Row) -> dict[str, str]:
    """ETag (version) and Last-Modified of a read, create or update answer."""
    headers = {} if varies("no-etag") else {"ETag": f'W/"{row.version}"'}
    if not deviates("last-modified-missing"):
        headers["Last-Modified"] = http_date(row.last_updated)
    return headers


# ---- Prefer (FHIR R4 http.html#ins-ret, async, handling) ---------------------------------


def prefer_tokens() -> list[str]:
    """The request's Prefer header as lower-case tokens without spaces ('return=minimal', 'respond-async')."""
    return [p.replace(" ", "").lower() for p in request.headers.get("Prefer", "").replace(";", ",").split(",")
            if p.strip()]


def prefers(token: str) -> bool:
    """True when the client's Prefer header holds ``token`` (e.g. 'respond-async', 'handling=lenient')."""
    return token.lower() in prefer_tokens()


def return_preference() -> str | None:
    """'minimal', 'representation' or 'OperationOutcome' when the request asks for one, else None."""
    for part in prefer_tokens():
        name, _, value = part.partition("=")
        if name == "return":
            value = value.strip('"')
            for known in ("minimal", "representation", "OperationOutcome"):
                if value == known.lower():
                    return known
    return None


def written(status: int, headers: dict[str, str], representation: Callable[[], dict[str, Any]],
            what: str) -> Response:
    """The answer to a successful create/update, shaped by the client's return preference.

    Without ``Prefer: return=`` the body stays empty, as Canvas answers (SPEC §1, §7)."""
    wanted = return_preference()
    if wanted == "representation":
        return fhir_response(representation(), status, headers)
    if wanted == "OperationOutcome":
        return fhir_response(operation_outcome("informational", what, "information"), status, headers)
    return fhir_response(None, status, headers)
