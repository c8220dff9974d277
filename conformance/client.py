"""Kept importable for the check modules: everything here lives in ``conformance.http``."""

from .http import (BODY_PREVIEW, AuthError, Exchange, FhirClient, NotJson, Politeness, RateLimited,  # noqa: F401
                   Recorder, Redactor, TargetError, TokenSource, created_id, json_or_none,
                   retry_after_seconds, tls_context)
