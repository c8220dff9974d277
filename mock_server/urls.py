"""The mock's public base URL: ``--base-url``, else the address it listens on — never the Host header.

A client-controlled ``Host`` copied into ``Location``, ``Content-Location`` or manifest URLs
would let a forged request send other clients (and their bearer tokens) elsewhere (SPEC §7).
"""
from __future__ import annotations

from flask import Flask, current_app, request

LISTEN_BASE = "fhir.listen_base"  # app.extensions key: http(s)://host:port the server is bound to


def set_listen_address(app: Flask, scheme: str, host: str, port: int) -> str:
    """Record where the server listens (called once it is bound); returns the base URL clients get."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"  # a wildcard is no address to give out: --base-url names the public one
    if ":" in host:
        host = f"[{host}]"
    app.extensions[LISTEN_BASE] = f"{scheme}://{host}:{port}"
    return public_base(app)


def public_base(app: Flask) -> str:
    """The configured base URL, else the listening address (without a trailing slash)."""
    configured = app.config["MOCK"].base_url
    if configured:
        return configured
    listen = app.extensions.get(LISTEN_BASE)
    if listen:
        return listen
    return ""


def base_url() -> str:
    """Base of every absolute URL in a response; outside a bound server (Flask's test client) the
    WSGI server's own name and port (SERVER_NAME/SERVER_PORT), which a client cannot forge."""
    base = public_base(current_app)
    if base:
        return base
    environ = request.environ
    scheme = environ.get("wsgi.url_scheme", "http")
    port = str(environ.get("SERVER_PORT", ""))
    default = "443" if scheme == "https" else "80"
    host = environ.get("SERVER_NAME", "localhost")
    return f"{scheme}://{host}" + ("" if port in ("", default) else f":{port}")


def request_url() -> str:
    """The request's own URL rebuilt on ``base_url`` (the path and query as sent)."""
    query = request.query_string.decode("latin-1")
    return base_url() + request.path + (f"?{query}" if query else "")
