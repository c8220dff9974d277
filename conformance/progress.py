"""Progress while the suite runs (registered by ``fhir-conformance run``).

In a terminal: a live line per profile (checks done/total, failures, the current check,
elapsed time), drawn by rich, in place of pytest's dots. Without a terminal (CI logs):
a plain line when check groups (every case of one check id) finish, at most one line
every ``interval`` seconds. Problems that make the rest of the run doubtful (a set-up
error, a target that stopped answering) are printed the moment they are known, in both
modes; the closing summary repeats them at its top.
"""

from __future__ import annotations

import io
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, TextIO

import pytest

PLAIN_INTERVAL = 5.0


@dataclass
class ProfileProgress:
    total: int = 0
    done: int = 0
    failed: int = 0
    current: str = ""
    started: float | None = None
    finished: float | None = None


@dataclass(eq=False)      # pluggy keeps plugins in sets: identity hashing
class Progress:
    """The pytest plugin; ``clock`` is injectable so tests need no wall-clock bounds."""

    tty: bool
    stream: TextIO = field(default_factory=lambda: sys.stdout)
    clock: Callable[[], float] = time.monotonic
    interval: float = PLAIN_INTERVAL

    def __post_init__(self) -> None:
        self.profiles: dict[str, ProfileProgress] = {}
        self.items: dict[str, tuple[str, str, str]] = {}     # nodeid -> (profile, check id, group)
        self.group_left: dict[str, int] = {}
        self.finished_groups: list[str] = []
        self.last_line = self.clock()
        self.started = self.clock()
        self.shown_problems: set[str] = set()
        self.live: Any = None
        self._saved_writer: Any = None

    # -- collection ------------------------------------------------------------------
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        from .plugin import is_check, item_base_check_id, item_check_id, item_profile

        for item in session.items:
            if not is_check(item):
                continue
            profile, group = item_profile(item), item_base_check_id(item)
            self.items[item.nodeid] = (profile, item_check_id(item), group)
            self.profiles.setdefault(profile, ProfileProgress()).total += 1
            self.group_left[group] = self.group_left.get(group, 0) + 1

    # -- the run loop: pytest's dots give way to the live lines -----------------------------
    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtestloop(self, session: pytest.Session):  # type: ignore[no-untyped-def]
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None and self.items:
            self._saved_writer = reporter._tw        # pytest's progress dots go nowhere while we draw
            reporter._tw = type(reporter._tw)(io.StringIO())
        if self.tty and self.items:
            from rich.console import Console
            from rich.live import Live

            self.live = Live(self._table(), console=Console(file=self.stream), refresh_per_second=4, transient=False)
            self.live.start()
        try:
            yield
        finally:
            if self.live is not None:
                self.live.update(self._table())
                self.live.stop()
            elif self.items:
                self._plain_line(force=True)
            if self._saved_writer is not None:
                reporter._tw = self._saved_writer

    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        known = self.items.get(nodeid)
        if known is None:
            return
        state = self.profiles[known[0]]
        state.current = known[1]
        if state.started is None:
            state.started = self.clock()
        if self.live is not None:          # plain lines come only when groups finish
            self.live.update(self._table())

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        known = self.items.get(report.nodeid)
        if known is None:
            return
        profile, _, group = known
        state = self.profiles[profile]
        if report.failed:
            state.failed += 1 if report.when == "call" or report.when == "setup" else 0
        if report.when != "teardown":
            return
        state.done += 1
        if state.done == state.total:
            state.finished, state.current = self.clock(), ""
        self.group_left[group] -= 1
        if self.group_left[group] == 0:
            self.finished_groups.append(group)
        self._refresh()

    # -- problems, the moment they are known ---------------------------------------------------
    def announce(self, problems: list[str]) -> None:
        """Print problems not shown yet (called by the plugin after each check)."""
        for problem in [p for p in problems if p not in self.shown_problems]:
            self.shown_problems.add(problem)
            line = f"PROBLEM: {problem}"
            if self.live is not None:
                self.live.console.print(line, style="bold red", markup=False, highlight=False)
            else:
                print(line, file=self.stream, flush=True)

    # -- drawing -----------------------------------------------------------------------------------
    def _refresh(self) -> None:
        if self.live is not None:
            self.live.update(self._table())
        elif self.items:
            self._plain_line()

    def _elapsed(self, state: ProfileProgress) -> float:
        if state.started is None:
            return 0.0
        return (state.finished or self.clock()) - state.started

    def _table(self) -> Any:
        from rich.table import Table

        table = Table.grid(padding=(0, 2))
        for name, state in self.profiles.items():
            status = "done" if state.finished else (state.current or "waiting")
            failed = f"[red]{state.failed} failed[/red]" if state.failed else "0 failed"
            table.add_row(f"[bold]{name}[/bold]", f"{state.done}/{state.total}", failed,
                          f"{self._elapsed(state):5.0f} s", status)
        return table

    def _plain_line(self, force: bool = False) -> None:
        now = self.clock()
        if not self.finished_groups or (not force and now - self.last_line < self.interval):
            return
        parts = [f"{name} {s.done}/{s.total}" + (f" ({s.failed} failed)" if s.failed else "")
                 for name, s in self.profiles.items() if s.total]
        shown = ", ".join(self.finished_groups[-3:])
        more = f" and {len(self.finished_groups) - 3} more" if len(self.finished_groups) > 3 else ""
        print(f"[{now - self.started:5.0f} s] {'; '.join(parts)} - finished {shown}{more}",
              file=self.stream, flush=True)
        self.finished_groups = []
        self.last_line = now
