"""Serving with waitress (never Flask's dev server), in the foreground or on a thread."""
from __future__ import annotations

import ssl
import threading
import warnings
from contextlib import contextmanager
from socketserver import ThreadingMixIn
from typing import Any, Iterator
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.simple_server import make_server as make_wsgiref_server

from flask import Flask
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import create_server

from . import create_app, db, jobs
from .config import MockConfig
from .urls import LISTEN_BASE, set_listen_address

# waitress answers bodies above its own limit with a plain-text 413; keep it far above
# MockConfig.max_body_bytes so the app's OperationOutcome 413 is what clients see
# (waitress spools large bodies to temporary files, not memory).
WAITRESS_BODY_LIMIT = 256 * 1024 * 1024


class _BodylessContinueParser(HTTPRequestParser):
    """``Expect: 100-continue`` on a request without a body: answer the request itself.

    waitress 3.0 sends the interim 100 and then marks the (already complete) request as
    incomplete, so a body-less request with that header is never answered. RFC 9110 §10.1.1
    lets a server skip the 100 when there is no body to wait for; that is what this does.
    """

    def parse_header(self, header_plus: bytes) -> None:
        super().parse_header(header_plus)
        if self.expect_continue and not self.chunked and self.content_length == 0:
            self.expect_continue = False


class _Channel(HTTPChannel):
    parser_class = _BodylessContinueParser


def make_server(app: Flask, host: str, port: int, threads: int = 8):  # type: ignore[no-untyped-def]
    """A bound waitress server; ``port=0`` picks a free port (see ``effective_port``).

    Records the listening address on the app: absolute URLs are built from it (or --base-url)."""
    server = create_server(app, host=host, port=port, threads=threads, ident="fhir-mock",
                           max_request_body_size=max(app.config["MOCK"].max_body_bytes * 4, WAITRESS_BODY_LIMIT))
    server.channel_class = _Channel
    set_listen_address(app, "http", host, server.effective_port)
    return server


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
        jobs.shutdown(app)
        db.get_store(app).close()


# -- TLS listener ------------------------------------------------------------------
# waitress does not terminate TLS; for the TLS option the app is served by the standard
# library's threaded WSGI server on an ssl-wrapped socket (optionally requiring a client
# certificate signed by a given CA: mutual TLS). Plain HTTP stays on waitress.


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A refused handshake (no or untrusted client certificate) is the client's problem: stay quiet."""


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _TLSHandler(_QuietHandler):
    def get_environ(self) -> dict:
        environ = super().get_environ()
        environ["HTTPS"] = "on"
        return environ


def make_tls_server(app: Flask, host: str, port: int, certfile: str, keyfile: str,
                    client_ca: str | None = None) -> WSGIServer:
    """An HTTPS server for ``app``; with ``client_ca`` a client certificate signed by it is required.

    Deviations: ``tls-legacy-only`` speaks TLS 1.0/1.1 only; ``tls-off`` serves plain http."""
    deviations = app.config["MOCK"].deviations
    if "tls-off" in deviations:
        server = make_wsgiref_server(host, port, app, server_class=_ThreadingWSGIServer,
                                     handler_class=_QuietHandler)
        set_listen_address(app, "http", host, server.server_address[1])
        return server
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile, keyfile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2        # the Bulk Data IG's floor
    if "tls-legacy-only" in deviations:
        with warnings.catch_warnings():     # deprecated versions, on purpose
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version, context.maximum_version = ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1
        context.set_ciphers("DEFAULT:@SECLEVEL=0")          # OpenSSL 3 speaks 1.0/1.1 only at level 0
    if client_ca:
        context.load_verify_locations(client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    server = make_wsgiref_server(host, port, app, server_class=_ThreadingWSGIServer, handler_class=_TLSHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    set_listen_address(app, "https", host, server.server_address[1])
    return server


@contextmanager
def run_tls_in_thread(config: MockConfig, certfile: str, keyfile: str, client_ca: str | None = None,
                      host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``config`` over HTTPS on a background thread; yields the https base URL."""
    app = create_app(config)
    server = make_tls_server(app, host, port, certfile, keyfile, client_ca)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="fhir-mock-tls", daemon=True)
    thread.start()
    try:
        yield app.extensions[LISTEN_BASE]         # https (http under the deviation tls-off)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        db.get_store(app).close()
