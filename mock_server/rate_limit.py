"""The ``rate-limited`` variant: every Nth request is answered 429 with IETF ``RateLimit`` headers.

A legal answer (RFC 6585 §4; draft-ietf-httpapi-ratelimit-headers), and one that real
servers give without ``Retry-After``: the suite must wait as the headers say and carry on.
"""
from __future__ import annotations

import threading

from flask import Flask, Response

from .http import error_response
from .variants import varies

EVERY = 40            # the Nth request of the app is refused
RESET = 1             # seconds the client is asked to wait (the window of the policy)


def install(app: Flask) -> None:
    lock = threading.Lock()
    seen = [0]

    @app.before_request
    def limit_rate() -> Response | None:
        if not varies("rate-limited"):
            return None
        with lock:
            seen[0] += 1
            refused = seen[0] % EVERY == 0
        if not refused:
            return None
        return error_response(429, "Too many requests: slow down as the RateLimit header says", "throttled",
                              headers={"RateLimit": f'"default";r=0;t={RESET}',
                                       "RateLimit-Policy": f'"default";q={EVERY};w={RESET}'})
