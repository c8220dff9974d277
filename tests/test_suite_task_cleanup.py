"""Every task the suite creates is left cancelled, and carries the run prefix."""

from __future__ import annotations

import httpx
import pytest

from mock_server import MockConfig
from mock_server.server import run_in_thread

from suite_runner import TOKEN, TOKENS, run_suite

pytestmark = pytest.mark.slow


def test_tasks_created_by_the_run_are_left_cancelled(tmp_path):
    config = MockConfig(db=str(tmp_path / "mock.sqlite3"), tokens=TOKENS)
    with run_in_thread(config) as base_url:
        run = run_suite(tmp_path / "reports", "--seed", "5", "--examples", "3", "--requirement",
                        "CANVAS-TASK-OMIT-OWNER-CLEARED", "--requirement", "CANVAS-TASK-SEARCH-LABEL",
                        target=base_url)
        prefix = run.summary["run_prefix"]
        bundle = httpx.get(f"{base_url}/Task", params={"description": prefix, "_count": 100},
                           headers={"Authorization": f"Bearer {TOKEN}"}).json()
        everything = httpx.get(f"{base_url}/Task", params={"_count": 0},
                               headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert run.exit_code == 0, run.output[-3000:]
    ours = [e["resource"] for e in bundle.get("entry", [])]
    assert ours, "the run created no task, so this test proves nothing"
    assert len(ours) == everything["total"], "a task without the run prefix was created"
    assert [t["id"] for t in ours if t["status"] != "cancelled"] == []
