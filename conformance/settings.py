"""Run settings, from three places: command line > environment > conformance.toml.

One small frozen dataclass (httpx-style explicit config) that every other module
receives; nothing reads the environment behind its back. Secrets are kept here
and nowhere else, and ``secrets()`` lists them so every output can be redacted.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from .brief import Brief

ENV_PREFIX = "FHIR_CONFORMANCE_"
CONFIG_FILE = "conformance.toml"
PROFILES = ("fhir-core", "canvas", "bulk-export", "bulk-cohort")


class SettingsError(ValueError):
    """A usage or configuration mistake: the CLI reports it and exits 2."""


@dataclass(frozen=True)
class Settings(Brief):          # Brief: a fixture of @given checks, printed as its repr (no secrets)
    target: str | None = None
    token: str | None = field(default=None, repr=False)
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    token_url: str | None = None
    limited_token: str | None = field(default=None, repr=False)
    profiles: tuple[str, ...] = ()
    requirements: tuple[str, ...] = ()
    checks: tuple[str, ...] = ()             # stable check ids (with or without [parameters])
    strict: bool = False
    report_dir: Path = Path("reports")
    seed: int | None = None
    examples: int = 15
    timeout: float = 30.0
    notes_replace: bool = False
    shrink: bool = True
    run_prefix: str | None = None
    # SMART Backend Services (client credentials with a signed JWT assertion)
    private_key: str | None = None           # path to a JWK/JWKS or PEM private key file
    key_id: str | None = None
    scope: str | None = None
    # TLS
    ca_bundle: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    insecure: bool = False
    # robustness and politeness
    max_body_mb: float = 20.0
    max_redirects: int = 5
    max_rps: float | None = None
    max_concurrency: int = 4
    max_retry_wait: float = 30.0
    # gating
    baseline: Path | None = None
    export_timeout: float = 120.0      # seconds a bulk export may take before the suite gives up on it
    export_validate_lines: int = 5000  # per file, lines validated against the R4 model (0: all)
    export_group: str | None = None    # export this existing Group instead of creating a small one

    def secrets(self) -> list[str]:
        """Every secret value, for redaction of anything the suite writes."""
        return [s for s in (self.token, self.client_secret, self.limited_token) if s]

    def validated(self) -> "Settings":
        if self.target is not None and not self.target.startswith(("http://", "https://")):
            raise SettingsError(f"target must be an http(s) URL, got {self.target!r}")
        unknown = [p for p in self.profiles if p not in PROFILES]
        if unknown:
            raise SettingsError(f"unknown profile(s) {unknown}; choose from {list(PROFILES)}")
        if self.private_key and not self.client_id:
            raise SettingsError("a private key (SMART Backend Services) needs a client id")
        if self.private_key and self.client_secret:
            raise SettingsError("give either a client secret or a private key, not both")
        if not self.private_key and bool(self.client_id) != bool(self.client_secret):
            raise SettingsError("client id and client secret (or private key) must be given together")
        for name in ("private_key", "ca_bundle", "client_cert", "client_key", "baseline"):
            value = getattr(self, name)
            if value and not Path(value).is_file():
                raise SettingsError(f"{name.replace('_', ' ')} file not found: {value}")
        if self.client_key and not self.client_cert:
            raise SettingsError("a client key needs a client certificate")
        if self.insecure and self.ca_bundle:
            raise SettingsError("give either a CA bundle or insecure, not both")
        if self.max_body_mb <= 0 or self.max_redirects < 0 or self.max_concurrency < 1:
            raise SettingsError("max body must be positive, max redirects >= 0, max concurrency >= 1")
        if self.max_rps is not None and self.max_rps <= 0:
            raise SettingsError("max rps must be positive")
        if self.max_retry_wait < 0:
            raise SettingsError("max retry wait must not be negative")
        if self.token and self.client_id:
            raise SettingsError("give either a token or client credentials, not both")
        if self.examples < 1:
            raise SettingsError("examples must be at least 1")
        if self.timeout <= 0:
            raise SettingsError("timeout must be positive")
        if self.export_timeout <= 0:
            raise SettingsError("export timeout must be positive")
        if self.export_validate_lines < 0:
            raise SettingsError("export_validate_lines must be 0 (all) or more")
        return self


_CONVERTERS = {
    "profiles": lambda v: tuple(v) if isinstance(v, (list, tuple)) else tuple(
        p.strip() for p in str(v).replace(",", " ").split() if p.strip()),
    "requirements": lambda v: tuple(v) if isinstance(v, (list, tuple)) else tuple(
        p.strip() for p in str(v).replace(",", " ").split() if p.strip()),
    "checks": lambda v: tuple(v) if isinstance(v, (list, tuple)) else tuple(
        p.strip() for p in str(v).replace(",", " ").split() if p.strip()),
    "strict": lambda v: v if isinstance(v, bool) else str(v).lower() in ("1", "true", "yes", "on"),
    "shrink": lambda v: v if isinstance(v, bool) else str(v).lower() in ("1", "true", "yes", "on"),
    "notes_replace": lambda v: v if isinstance(v, bool) else str(v).lower() in ("1", "true", "yes", "on"),
    "insecure": lambda v: v if isinstance(v, bool) else str(v).lower() in ("1", "true", "yes", "on"),
    "report_dir": Path,
    "baseline": Path,
    "max_body_mb": float,
    "max_redirects": int,
    "max_rps": float,
    "max_concurrency": int,
    "max_retry_wait": float,
    "seed": int,
    "examples": int,
    "timeout": float,
    "export_timeout": float,
    "export_validate_lines": int,
}
NAMES = tuple(f.name for f in fields(Settings))


def _convert(values: Mapping[str, Any], origin: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in NAMES:
            raise SettingsError(f"{origin}: unknown setting {key!r}")
        if value is None:
            continue
        try:
            out[name] = _CONVERTERS.get(name, str)(value)
        except (TypeError, ValueError):
            raise SettingsError(f"{origin}: invalid value for {key!r}: {value!r}") from None
    return out


def from_file(path: Path, required: bool = False) -> dict[str, Any]:
    """Settings from a TOML file; a missing file is an error only when it was named explicitly."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if required:
            raise SettingsError(f"config file not found: {path}") from None
        return {}
    except IsADirectoryError:
        raise SettingsError(f"config file {path} is a directory") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from None
    section = data.get("conformance", data)
    return _convert(section, str(path))


def from_env(env: Mapping[str, str]) -> dict[str, Any]:
    picked = {k[len(ENV_PREFIX):].lower(): v for k, v in env.items()
              if k.startswith(ENV_PREFIX) and v != ""}
    return _convert(picked, "environment")


def load(cli: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
         config_path: Path | None = None) -> Settings:
    """Merge the three sources; later ones win: file < environment < command line."""
    env = os.environ if env is None else env
    path = config_path or Path(env.get(ENV_PREFIX + "CONFIG", CONFIG_FILE))
    merged: dict[str, Any] = {}
    merged.update(from_file(path))
    merged.update(from_env({k: v for k, v in env.items() if k != ENV_PREFIX + "CONFIG"}))
    merged.update(_convert({k: v for k, v in (cli or {}).items()}, "command line"))
    return Settings(**merged).validated()


def with_defaults_for_mock(settings: Settings, base_url: str, token: str, limited: str) -> Settings:
    """Point settings at a freshly started bundled mock."""
    return replace(settings, target=base_url, token=token, limited_token=limited,
                   client_id=None, client_secret=None, token_url=None, private_key=None, key_id=None)


def max_body_bytes(settings: Settings) -> int:
    return int(settings.max_body_mb * 1024 * 1024)
