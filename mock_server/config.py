"""Runtime configuration of the mock: one dataclass, built by the CLI or by tests."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_TOKENS: dict[str, str] = {"dev-token": "", "dev-readonly-token": "system/*.read"}
FAULTS: dict[str, str] = {  # simulated export faults (fhir-mock --fault NAME); not deviations
    "transient-error": "The first status poll of each job answers 503 with a transient OperationOutcome.",
    "failed-job": "Every export job fails; its status URL answers 500 with an OperationOutcome.",
    "slow-job": "Jobs pause slow_job_seconds per batch of members (clients must time out cleanly).",
    "expired-file": "Files have expired once the job completes: Expires is past and downloads answer 404.",
}
DEFAULT_CLIENTS: dict[str, tuple[str, str]] = {"dev-client": ("dev-secret", "")}


def _default_fixtures() -> Path:
    return Path(__file__).resolve().parents[1] / "fixtures"


@dataclass(frozen=True)
class MockConfig:
    """Everything the app needs to know; immutable so threads can share it.

    ``tokens`` maps a static bearer token to its scope string ("" = full access);
    ``clients`` maps a client id to ``(secret, allowed scopes)`` for the token endpoint;
    ``jwks_clients`` maps a client id to ``(JWKS, allowed scopes)``: SMART Backend Services
    clients that authenticate with a JWT assertion signed by one of the JWKS's keys.
    """

    db: str = "fhir-mock.sqlite3"
    tokens: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_TOKENS))
    clients: dict[str, tuple[str, str]] = field(default_factory=lambda: dict(DEFAULT_CLIENTS))
    jwks_clients: dict[str, tuple[dict, str]] = field(default_factory=dict)
    deviations: frozenset[str] = frozenset()
    variants: frozenset[str] = frozenset()   # legal choices (mock_server/variants.py), implied ones added
    max_body_bytes: int = 1024 * 1024
    page_default: int = 10
    page_max: int = 100
    token_ttl: int = 3600
    fixtures_dir: Path | None = field(default_factory=_default_fixtures)
    # Bulk export (mock_server/bulk): generated population, pacing, simulated faults
    patients: int = 0                  # --patients N: generated patients in one extra Patient Group
    export_dir: str | None = None      # default: <db>.exports/ (a temporary directory for :memory:)
    export_retry_after: int = 1        # seconds asked in Retry-After while a job runs
    export_poll_min: float = 0.0       # >0: a poll sooner than this after the last one gets 429
    export_ttl: int = 3600             # seconds until a manifest's files expire (Expires header)
    export_min_seconds: float = 0.3    # a job stays in progress at least this long (clients see a 202 first)
    faults: frozenset[str] = frozenset()
    slow_job_seconds: float = 2.0      # the slow-job fault's pause per batch of members
    cohort_min_seconds: float = 0.0    # an async cohort create stays in progress at least this long

    def __post_init__(self) -> None:
        from .deviations import validate_names  # local: deviations imports nothing from here

        object.__setattr__(self, "deviations", frozenset(self.deviations))
        validate_names(self.deviations)
        from .variants import expand

        object.__setattr__(self, "variants", expand(self.variants))
        object.__setattr__(self, "faults", frozenset(self.faults))
        unknown = sorted(self.faults - FAULTS.keys())
        if unknown:
            raise ValueError(f"unknown fault(s): {', '.join(unknown)}; valid: {', '.join(sorted(FAULTS))}")
