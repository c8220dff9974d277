"""Kept importable for the check modules: everything here lives in ``conformance.http``."""

from .http import (BODY_PREVIEW, CLIENT_ASSERTION_TYPE, AuthError, Exchange, FhirClient, NotJson,  # noqa: F401
                   Politeness, RateLimited, Recorder, Redactor, TargetError, TokenSource, created_id, json_or_none,
                   load_signing_key, retry_after_seconds, tls_context)
