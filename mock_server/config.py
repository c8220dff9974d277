"""Runtime configuration of the mock: one dataclass, built by the CLI or by tests."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_TOKENS: dict[str, str] = {"dev-token": "", "dev-readonly-token": "system/*.read"}
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
    max_body_bytes: int = 1024 * 1024
    page_default: int = 10
    page_max: int = 100
    token_ttl: int = 3600
    fixtures_dir: Path | None = field(default_factory=_default_fixtures)

    def __post_init__(self) -> None:
        from .deviations import validate_names  # local: deviations imports nothing from here

        object.__setattr__(self, "deviations", frozenset(self.deviations))
        validate_names(self.deviations)
