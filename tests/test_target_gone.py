"""A target that dies mid-run is named up front: the last request it answered and the check that
saw it go (issue 11); the remaining checks are errors, and the run is never headlined FAIL."""

from __future__ import annotations

import threading

import pytest

import mock_server.server as mock_server_module
from mock_server import MockConfig
from mock_server.server import run_in_thread

from suite_runner import TOKENS, run_suite

pytestmark = pytest.mark.slow
ANSWERED = 40        # requests the mock answers before its "crash"
HANG = 3.0           # seconds a request to the dead mock hangs (the suite's --timeout is 1 s)
stop = threading.Event()


def dying_after(create_app, answered: int):  # type: ignore[no-untyped-def]
    """``create_app`` whose app answers ``answered`` requests, then hangs past the client's timeout."""
    def create(config):  # type: ignore[no-untyped-def]
        app = create_app(config)
        inner, lock, count = app.wsgi_app, threading.Lock(), [0]

        def wsgi(environ, start_response):  # type: ignore[no-untyped-def]
            with lock:
                count[0] += 1
                dead = count[0] > answered
            if dead:
                stop.wait(HANG)
                start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
                return [b"upstream connect error"]
            return inner(environ, start_response)

        app.wsgi_app = wsgi
        return app
    return create


def test_a_target_that_dies_mid_run_is_named_with_the_last_request_and_the_check(tmp_path, monkeypatch):
    monkeypatch.setattr(mock_server_module, "create_app", dying_after(mock_server_module.create_app, ANSWERED))
    with run_in_thread(MockConfig(db=":memory:", tokens=TOKENS)) as base_url:
        run = run_suite(tmp_path / "reports", "--seed", "3", "--examples", "2", "--no-shrink",
                        "--requirement", "CANVAS-GROUP-CREATE", "--requirement", "CANVAS-GROUP-SEARCH-TYPE",
                        "--requirement", "CANVAS-TASK-CREATE", "--timeout", "1", target=base_url)
        stop.set()
    summary = run.summary
    first = summary["problems"][0]
    assert first.startswith("the target stopped answering after GET /") or \
        first.startswith("the target stopped answering after POST /") or \
        first.startswith("the target stopped answering after PUT /"), first
    assert " in check " in first and "it may have crashed" in first, first
    named = first.split(" in check ")[1].split(";")[0]
    assert named in {c["id"] for c in summary["checks"]}, named
    assert summary["verdict"]["label"] != "FAIL" and run.exit_code == 3, summary["verdict"]
    assert any(c["outcome"] == "error" for c in summary["checks"])
    output_start = "\n".join(line for line in run.output.splitlines() if line.startswith("PROBLEM: "))
    assert first in output_start
