"""Optional access log (``fhir-mock --access-log FILE|-``): one Common Log Format line per request.

Written after the response is built, errors included; never the Authorization header.
"""
from __future__ import annotations

import logging
import sys
import time

from flask import Flask, Response, g, request

log = logging.getLogger("fhir_mock.access")


def install(app: Flask, target: str) -> None:
    """Log every request of ``app`` to ``target`` (a file path, or '-' for stderr)."""
    handler: logging.Handler = (logging.StreamHandler(sys.stderr) if target == "-"
                                else logging.FileHandler(target, encoding="utf-8"))
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False

    @app.before_request
    def _started() -> None:
        g.access_started = time.perf_counter()

    @app.after_request
    def _line(response: Response) -> Response:
        started = g.get("access_started", time.perf_counter())
        query = request.query_string.decode("latin-1")
        target_path = request.path + (f"?{query}" if query else "")
        size = response.calculate_content_length()
        log.info('%s - - [%s] "%s %s %s" %d %s %.1fms', request.remote_addr or "-",
                 time.strftime("%d/%b/%Y:%H:%M:%S %z"), request.method, target_path,
                 request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"), response.status_code,
                 "-" if size is None else size, (time.perf_counter() - started) * 1000)
        return response
