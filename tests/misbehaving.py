"""A small HTTP server that misbehaves on purpose, with real sockets (one mode per instance).

Modes: ``silent`` (accepts, never answers), ``slow`` (headers after ``delay`` seconds),
``trickle`` (headers at once, then one body byte every 0.2 s), ``trickle-headers`` (the
status line, then one header byte every 0.2 s, forever), ``html``, ``garbage``,
``huge`` (announces and streams hundreds of MB), ``huge-chunked`` (no length, streams until
the client hangs up), ``redirect-loop``, ``drop`` (closes mid-body), ``429`` (asks to wait
``retry_after``, then answers), ``ok`` (a tiny JSON Bundle; ``hold`` seconds before
answering). With ``metadata_ok`` ``GET /metadata`` answers a CapabilityStatement declaring
Group, so a run gets past its preflight and meets the misbehaviour in its checks.
``refused_url()`` is a loopback URL where nothing listens.

Every request's arrival (monotonic time, path) is kept in ``arrivals``; the highest number of
requests being answered at once in ``max_in_flight``.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from typing import Any

CAPABILITY = {
    "resourceType": "CapabilityStatement", "status": "active", "kind": "instance", "fhirVersion": "4.0.1",
    "software": {"name": "misbehaving Canvas stand-in"},   # a Canvas marker (SPEC §0): its checks apply
    "format": ["json"], "rest": [{"mode": "server", "resource": [
        {"type": "Group", "interaction": [{"code": c} for c in ("create", "read", "update", "search-type")],
         "searchParam": [{"name": n, "type": "token"} for n in ("type", "member", "_id", "name")]}]}],
}
BUNDLE = {"resourceType": "Bundle", "type": "searchset", "total": 0}


def refused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class _Handler(socketserver.BaseRequestHandler):
    server: "_Server"

    def handle(self) -> None:
        srv = self.server.owner
        sock: socket.socket = self.request
        sock.settimeout(10)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                data += chunk
        except OSError:
            return
        head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        path = head.split(" ")[1] if " " in head else "/"
        with srv.lock:
            srv.arrivals.append((time.monotonic(), path))
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
        self.counted = True
        try:
            self.answer(srv, sock, path)
        except OSError:
            pass
        finally:
            self.done(srv)

    def done(self, srv: "Misbehaving") -> None:
        """No longer in flight; called before the last byte goes out, so a client that waits
        for the answer before its next request can never be counted twice."""
        with srv.lock:
            if self.counted:
                srv.in_flight -= 1
                self.counted = False

    def answer(self, srv: "Misbehaving", sock: socket.socket, path: str) -> None:
        if srv.metadata_ok and path.startswith("/metadata"):
            return _send(sock, 200, json.dumps(CAPABILITY).encode(), "application/fhir+json")
        mode = srv.mode
        if mode == "silent":
            srv.stop.wait()
        elif mode == "slow":
            if not srv.stop.wait(srv.delay):
                _send(sock, 200, json.dumps(BUNDLE).encode(), "application/fhir+json")
        elif mode == "trickle":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n"
                         b"Content-Length: 100000\r\nConnection: close\r\n\r\n")
            while not srv.stop.wait(0.2):
                sock.sendall(b" ")
        elif mode == "trickle-headers":
            sock.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            while not srv.stop.wait(0.2):
                sock.sendall(b"a")
        elif mode == "html":
            _send(sock, 200, b"<html><body><h1>Welcome to nginx!</h1></body></html>", "text/html")
        elif mode == "garbage":
            _send(sock, 200, b"\x00\xffnot json at all {{{", "application/fhir+json")
        elif mode == "huge":
            size = 400 * 1024 * 1024
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n"
                         + f"Content-Length: {size}\r\nConnection: close\r\n\r\n".encode())
            block = b"[" + b" " * 65535
            for _ in range(size // len(block)):
                if srv.stop.is_set():
                    return
                sock.sendall(block)
        elif mode == "huge-chunked":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n"
                         b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
            block = b" " * 65536
            while not srv.stop.is_set():
                sock.sendall(f"{len(block):x}\r\n".encode() + block + b"\r\n")
        elif mode == "redirect-loop":
            sock.sendall(f"HTTP/1.1 302 Found\r\nLocation: {path}\r\nContent-Length: 0\r\n"
                         "Connection: close\r\n\r\n".encode())
        elif mode == "drop":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n"
                         b"Content-Length: 5000\r\nConnection: close\r\n\r\n{\"resourceType\": \"Bun")
        elif mode == "429":
            with srv.lock:
                srv.limited += 1
                first = srv.limited <= srv.limit_times
            if first:
                body = json.dumps({"resourceType": "OperationOutcome", "issue": [
                    {"severity": "error", "code": "throttled"}]}).encode()
                _send(sock, 429, body, "application/fhir+json", {"Retry-After": srv.retry_after()})
            else:
                _send(sock, 200, json.dumps(BUNDLE).encode(), "application/fhir+json")
        else:  # ok
            if srv.hold:
                srv.stop.wait(srv.hold)
            self.done(srv)
            _send(sock, 200, json.dumps(BUNDLE).encode(), "application/fhir+json")


def _send(sock: socket.socket, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
    reason = {200: "OK", 429: "Too Many Requests"}.get(status, "Status")
    headers = "".join(f"{k}: {v}\r\n" for k, v in (extra or {}).items())
    sock.sendall(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                 f"{headers}Connection: close\r\n\r\n".encode() + body)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: "Misbehaving"


class Misbehaving:
    def __init__(self, mode: str, *, metadata_ok: bool = False, delay: float = 5.0, hold: float = 0.0,
                 retry_after: Any = "1", limit_times: int = 1):
        self.mode, self.metadata_ok, self.delay, self.hold = mode, metadata_ok, delay, hold
        self._retry_after, self.limit_times, self.limited = retry_after, limit_times, 0
        self.arrivals: list[tuple[float, str]] = []
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def retry_after(self) -> str:
        return self._retry_after() if callable(self._retry_after) else str(self._retry_after)

    def __enter__(self) -> "Misbehaving":
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self._server.shutdown()
        self._server.server_close()
