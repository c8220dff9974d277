"""One conformance run: settings, the client, what the target declares, results.

The plugin keeps one ``ConformanceRun`` per pytest session; fixtures hand out
its parts, and the report reads its results at the end.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from functools import cached_property

import httpx

from .capabilities import Capabilities
from .client import FhirClient, Recorder, Redactor, TokenSource, json_or_none
from .settings import Settings
from .target import Ledger, TargetData, discover, new_run_prefix


class TargetUnreachable(RuntimeError):
    """The target did not answer at all: the run cannot say anything about it."""


@dataclass
class CheckResult:
    """The outcome of one test item, in conformance terms."""

    nodeid: str
    check_id: str
    profile: str
    requirements: tuple[str, ...]
    outcome: str                     # passed | failed | warning | skipped | error
    message: str = ""
    failed_requirements: tuple[str, ...] = ()
    warned_requirements: dict[str, str] = field(default_factory=dict)
    verified: tuple[str, ...] = ()
    duration: float = 0.0
    exchange: Any = None             # the exchange that shows the breach, if known


@dataclass
class ConformanceRun:
    settings: Settings
    seed: int | None = None
    started: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    results: list[CheckResult] = field(default_factory=list)
    recorder: Recorder = field(default_factory=Recorder)
    ledger: Ledger = field(default_factory=Ledger)
    cleanup_problems: list[str] = field(default_factory=list)
    summary: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.run_prefix = self.settings.run_prefix or new_run_prefix()
        self.redact = Redactor(self.settings.secrets())

    @property
    def target(self) -> str:
        if not self.settings.target:
            raise TargetUnreachable("no target URL configured (use --target or FHIR_CONFORMANCE_TARGET)")
        return self.settings.target.rstrip("/")

    @cached_property
    def capabilities(self) -> Capabilities:
        probe = FhirClient(self.target, TokenSource(None), self.recorder, self.redact, self.settings.timeout)
        try:
            response = probe.get("metadata", auth=False)
        except httpx.HTTPError as exc:
            raise TargetUnreachable(f"cannot reach {self.target}: {type(exc).__name__}: {exc}") from None
        body = json_or_none(response) if response.status_code == 200 else None
        return Capabilities.from_statement(body)

    @cached_property
    def client(self) -> FhirClient:
        s = self.settings
        token_url = s.token_url or (self.capabilities.token_url() if s.client_id else None)
        tokens = TokenSource(s.token, s.client_id, s.client_secret, token_url)
        return FhirClient(self.target, tokens, self.recorder, self.redact, s.timeout)

    @cached_property
    def target_data(self) -> TargetData:
        return discover(self.client, self.run_prefix, set(self.ledger.groups))

    def active_profiles(self) -> tuple[set[str], str]:
        """The profiles to run and why (explicit choice, or what the target declares)."""
        if self.settings.profiles:
            return set(self.settings.profiles), "selected with --profile"
        return self.capabilities.declared_profiles(), "declared in the target's CapabilityStatement"

    def cleanup(self) -> None:
        if "client" not in self.__dict__:
            return
        try:
            self.cleanup_problems += self.ledger.release_all(self.client)
        except httpx.HTTPError as exc:
            self.cleanup_problems.append(f"clean-up interrupted: {type(exc).__name__}: {exc}")
