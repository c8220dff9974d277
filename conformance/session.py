"""One conformance run: settings, the client, what the target declares, results.

The plugin keeps one ``ConformanceRun`` per pytest session; fixtures hand out
its parts, and the report reads its results at the end.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from functools import cached_property
from pathlib import Path

import httpx

from .brief import Brief
from .capabilities import Capabilities
from .http import FhirClient, Politeness, Recorder, Redactor, TokenSource, json_or_none, open_http, tls_context
from .options import Settings, max_body_bytes
from .target import CleanUp, Ledger, TargetData, discover, new_run_prefix

if TYPE_CHECKING:
    from .results import CheckResult


class TargetUnreachable(RuntimeError):
    """The target did not answer at all: the run cannot say anything about it."""


@dataclass(repr=False)
class ConformanceRun(Brief):
    settings: Settings
    seed: int | None = None
    started: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    results: list[CheckResult] = field(default_factory=list)
    recorder: Recorder = field(default_factory=Recorder)
    ledger: Ledger = field(default_factory=Ledger)
    cleanup_problems: list[str] = field(default_factory=list)
    cleaned: CleanUp = field(default_factory=CleanUp)     # what clean-up removed and what it left behind
    summary: dict[str, Any] | None = None
    missing_declarations: set[str] = field(default_factory=set)   # run anyway because of --profile
    root_causes: dict[int, tuple[str, BaseException]] = field(default_factory=dict)     # id(shared failure) -> first check meeting it
    partial: bool = False                  # checks were deselected (-k, --check, --requirement)
    html_path: Path | None = None          # report files this run writes (None: not asked for)
    junit_path: Path | None = None
    fixture_exchanges: dict[str, list[Any]] = field(default_factory=dict)  # what shared fixtures sent
    problems: list[str] = field(default_factory=list)   # set-up problems, a target gone: shown at once and on top
    shown_in_full: dict[str, str] = field(default_factory=dict)   # requirement -> the check whose failure shows it

    def __repr__(self) -> str:
        return f"ConformanceRun({self.settings.target!r}, {len(self.results)} results)"

    def problem(self, text: str, first: bool = False) -> None:
        """Note a problem once; ``first``: it explains the others (a target gone), so it leads."""
        if text not in self.problems:
            self.problems.insert(0 if first else len(self.problems), text)

    def __post_init__(self) -> None:
        self.run_prefix = self.settings.run_prefix or new_run_prefix()
        self.redact = Redactor(self.settings.secrets())
        s = self.settings
        self.polite = Politeness(max_rps=s.max_rps, max_concurrency=s.max_concurrency,
                                 max_retry_wait=s.max_retry_wait)

    @cached_property
    def http(self) -> httpx.Client:
        """One connection pool for the run behind its politeness, recording and bounds (``conformance.http``)."""
        s = self.settings
        return open_http(self.polite, self.recorder, self.redact, timeout=s.timeout, max_body=max_body_bytes(s),
                         max_redirects=s.max_redirects,
                         verify=tls_context(s.ca_bundle, s.client_cert, s.client_key, s.insecure))

    def new_client(self, tokens: TokenSource) -> FhirClient:
        s = self.settings
        return FhirClient(self.target, tokens, self.recorder, self.redact, s.timeout, self.http, self.polite,
                          max_body_bytes(s), s.max_redirects)

    def discover_token_url(self) -> str | None:
        """SMART: ``[base]/.well-known/smart-configuration``, else the CapabilityStatement's oauth-uris."""
        probe = self.new_client(TokenSource(None))
        try:
            response = probe.get(".well-known/smart-configuration", auth=False, headers={"Accept": "application/json"})
            body = json_or_none(response) if response.status_code == 200 else None
            if isinstance(body, dict) and isinstance(body.get("token_endpoint"), str):
                return body["token_endpoint"]
        except httpx.HTTPError:
            pass
        return self.capabilities.token_url()

    @property
    def target(self) -> str:
        if not self.settings.target:
            raise TargetUnreachable("no target URL configured (use --target or FHIR_CONFORMANCE_TARGET)")
        return self.settings.target.rstrip("/")

    @cached_property
    def capabilities(self) -> Capabilities:
        probe = self.new_client(TokenSource(None))
        try:
            response = probe.get("metadata", auth=False)
        except httpx.HTTPError as exc:
            raise TargetUnreachable(f"cannot reach {self.target}: {type(exc).__name__}: {exc}") from None
        body = json_or_none(response) if response.status_code == 200 else None
        return Capabilities.from_statement(body)

    @cached_property
    def client(self) -> FhirClient:
        s = self.settings
        tokens = TokenSource(s.token, s.client_id, s.client_secret, s.token_url, private_key=s.private_key,
                             key_id=s.key_id, scope=s.scope, discover=self.discover_token_url)
        return self.new_client(tokens)

    @cached_property
    def target_data(self) -> TargetData:
        return discover(self.client, self.run_prefix, set(self.ledger.groups))

    def active_profiles(self) -> tuple[set[str], str]:
        """The profiles to run and why (explicit choice, or what the target declares)."""
        if self.settings.profiles:      # fhir-core applies to every FHIR server
            return set(self.settings.profiles) | {"fhir-core"}, "selected with --profile"
        return self.capabilities.declared_profiles(), "declared in the target's CapabilityStatement"

    def cleanup(self) -> None:
        """Remove what the run created (``Ledger.clean_up``), with a budget of its own for waiting out 429s."""
        if "client" not in self.__dict__:
            return
        self.polite.rate_limit_budget += self.polite.waited     # clean-up gets a whole budget of its own
        caps = self.__dict__.get("capabilities")
        self.cleaned = self.ledger.clean_up(
            self.client, can_delete=lambda rtype: caps is not None and "delete" in caps.interactions(rtype),
            can_search_ids=lambda rtype: caps is not None and "search-type" in caps.interactions(rtype)
            and "_id" in caps.search_params(rtype))
        self.cleanup_problems += self.cleaned.problems()
