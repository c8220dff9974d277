"""OperationOutcome responses, and error handlers so that no error escapes as HTML or a bare 500."""
from __future__ import annotations

import json
import logging
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

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
