"""The main job as the README's first command runs it: no target, so the CLI starts the bundled mock
(a fresh SMART client, a read-only token, fast exports) and runs the suite against it."""

from __future__ import annotations

from suite_runner import run_suite


def test_the_bundled_mock_serves_the_main_job_and_its_exports_are_seen_in_progress(tmp_path):
    run = run_suite(tmp_path / "reports", "--seed", "3", "--check", "export-kickoff-get", "--check",
                    "export-retry-after", "--check", "smart-token-response", token=None, limited=None,
                    env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert run.exit_code == 0, run.output[-3000:]
    assert "started the bundled mock at http://127.0.0.1:" in run.output
    outcomes = {c["id"]: c["outcome"] for c in run.summary["checks"]}
    # 50 ms in progress is enough: the first poll, sent at once, still sees the 202 and its Retry-After
    assert outcomes == {"export-kickoff-get": "passed", "export-retry-after": "passed",
                        "smart-token-response": "passed"}, outcomes
    assert not (tmp_path / ".hypothesis").exists()      # the run's directory holds the reports only
