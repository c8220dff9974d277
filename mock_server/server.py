"""Serving with waitress (never Flask's dev server), in the foreground or on a thread."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from flask import Flask
from waitress import wasyncore
from waitress.server import create_server

from . import create_app
from .bulk import jobs as bulk_jobs
from .config import MockConfig

# waitress answers bodies above its own limit with a plain-text 413; keep it far above
# MockConfig.max_body_bytes so the app's OperationOutcome 413 is what clients see
# (waitress spools large bodies to temporary files, not memory).
WAITRESS_BODY_LIMIT = 256 * 1024 * 1024


def make_server(app: Flask, host: str, port: int, threads: int = 8):  # type: ignore[no-untyped-def]
    """A bound waitress server; ``port=0`` picks a free port (see ``effective_port``)."""
    return create_server(app, host=host, port=port, threads=threads, ident="fhir-mock",
                         max_request_body_size=max(app.config["MOCK"].max_body_bytes * 4, WAITRESS_BODY_LIMIT))


def _loop_until(server, stop: threading.Event) -> None:  # type: ignore[no-untyped-def]
    """waitress's loop in short slices, so shutdown happens on this thread (no fd closed under select)."""
    socket_map = getattr(server, "_map", None) or server.map
    while not stop.is_set() and socket_map:
        wasyncore.loop(timeout=0.05, map=socket_map, use_poll=server.adj.asyncore_use_poll, count=1)


@contextmanager
def run_in_thread(config: MockConfig, host: str = "127.0.0.1", port: int = 0, threads: int = 8) -> Iterator[str]:
    """Serve ``config`` on a background thread; yields the base URL, shuts down on exit."""
    app = create_app(config)
    server = make_server(app, host, port, threads)
    stop = threading.Event()
    thread = threading.Thread(target=_loop_until, args=(server, stop), name="fhir-mock", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.effective_port}"
    finally:
        stop.set()
        thread.join(timeout=10)
        server.task_dispatcher.shutdown()
        wasyncore.close_all(getattr(server, "_map", None) or server.map)
        bulk_jobs.shutdown(app)
        app.extensions["fhir.store"].close()
