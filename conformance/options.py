"""Every run setting, declared once: ``OPTIONS`` is the table.

From the table come the ``Settings`` dataclass (httpx-style explicit config that every
other module receives; nothing reads the environment behind its back), the
``fhir-conformance run`` options, the pytest plugin's ``--fhir-*`` options, the
``FHIR_CONFORMANCE_*`` environment variables, the ``conformance.toml`` keys and the
README's settings table. Precedence: command line > environment > conformance.toml.
Adding a setting is one ``Option(...)`` row (plus its check in ``Settings.validated``
when it has a rule). Secrets are marked, kept out of the repr, and ``secrets()`` lists
them so every output can be redacted.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from .brief import Brief

ENV_PREFIX = "FHIR_CONFORMANCE_"
CONFIG_FILE = "conformance.toml"
PYTEST_PREFIX = "--fhir-"
PROFILES = ("fhir-core", "canvas", "bulk-export", "bulk-cohort", "smart-backend")


class SettingsError(ValueError):
    """A usage or configuration mistake: the CLI reports it and exits 2."""


def _words(value: Any) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return tuple(p.strip() for p in str(value).replace(",", " ").split() if p.strip())


def _flag(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")


# How a setting appears on a command line: a value, a repeatable value, or a flag.
VALUE, REPEATED, FLAG, NEGATED_FLAG = "value", "repeated", "flag", "negated-flag"
CONVERT: dict[type, Callable[[Any], Any]] = {str: str, int: int, float: float, Path: Path, bool: _flag, tuple: _words}


@dataclass(frozen=True)
class Option:
    """One setting: its Settings field, type and default, and how users spell it."""

    name: str                               # Settings field and conformance.toml key
    type: type                              # str, int, float, Path, bool, tuple (a list of words)
    default: Any
    help: str
    flag: str = ""                          # command-line option (default --<name with dashes>)
    group: str = ""                         # argparse group ('' = the main list)
    secret: bool = False                    # kept out of repr and redacted everywhere
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    optional: bool = False                  # None allowed (no default value)
    file: bool = False                      # names a file that must exist
    label: str = ""                         # what the README's table calls it (default: help)

    @property
    def option(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def pytest_option(self) -> str:
        return PYTEST_PREFIX + self.option.removeprefix("--")

    @property
    def style(self) -> str:
        if self.type is tuple:
            return REPEATED
        if self.type is bool:
            return NEGATED_FLAG if self.default else FLAG
        return VALUE

    def convert(self, value: Any) -> Any:
        return CONVERT[self.type](value)


SMART, TLS, POLITE = ("SMART Backend Services (client credentials with a signed JWT)", "TLS",
                      "robustness and politeness")
OPTIONS: tuple[Option, ...] = (
    Option("target", str, None, "base URL of the server under test (default: start the bundled mock)", optional=True,
           metavar="URL", label="server base URL"),
    Option("token", str, None, "bearer token (prefer FHIR_CONFORMANCE_TOKEN: argv is visible to others)",
           secret=True, optional=True, metavar="TOKEN"),
    Option("client_id", str, None, "OAuth client id (client credentials)", optional=True, metavar="ID"),
    Option("client_secret", str, None, "OAuth client secret (prefer FHIR_CONFORMANCE_CLIENT_SECRET)", secret=True,
           optional=True, metavar="SECRET"),
    Option("token_url", str, None, "OAuth token endpoint (default: from the CapabilityStatement)", optional=True,
           metavar="URL"),
    Option("limited_token", str, None, "a valid token without write scopes, for the 403 checks", secret=True,
           optional=True, metavar="TOKEN"),
    Option("profiles", tuple, (), "run this profile even if the target does not declare it (repeatable)",
           flag="--profile", choices=PROFILES, metavar="NAME"),
    Option("requirements", tuple, (), "run only the checks tied to this requirement (repeatable)",
           flag="--requirement", metavar="ID"),
    Option("checks", tuple, (), "run only this check, by the stable id `list` prints (repeatable; "
           "'ID' selects every parameter case, 'ID[case]' one)", flag="--check", metavar="ID"),
    Option("strict", bool, False, "SHOULD/MAY breaches and inexact status codes fail the run"),
    Option("report_dir", Path, Path("reports"), "where reports are written (default reports/)", metavar="DIR"),
    Option("seed", int, None, "Hypothesis seed (printed in every report)", optional=True, metavar="N"),
    Option("examples", int, 15, "Hypothesis examples per property check (default 15)", metavar="N"),
    Option("timeout", float, 30.0, "seconds per HTTP request: connect, each read and the whole response "
           "(default 30)", metavar="S"),
    Option("notes_replace", bool, False, "the target replaces Task notes on update (instead of appending)"),
    Option("shrink", bool, True, "report failing examples as found, without minimising them (faster)",
           flag="--no-shrink"),
    Option("run_prefix", str, None, "prefix of every name the suite writes (default: a fresh fhirck-<hex>)",
           optional=True, metavar="PREFIX"),
    Option("private_key", str, None, "JWK/JWKS or PEM private key (RS384 or ES384)", group=SMART, metavar="FILE",
           optional=True, file=True),
    Option("key_id", str, None, "kid registered with the server (default: the JWK's kid)", group=SMART,
           optional=True, metavar="KID"),
    Option("scope", str, None, "scopes to request, e.g. 'system/*.read system/Group.write'", group=SMART,
           optional=True, metavar="SCOPES"),
    Option("ca_bundle", str, None, "CA certificates to trust for the target", group=TLS, metavar="PEM",
           optional=True, file=True),
    Option("client_cert", str, None, "client certificate for mutual TLS", group=TLS, metavar="PEM", optional=True,
           file=True),
    Option("client_key", str, None, "private key of the client certificate", group=TLS, metavar="PEM",
           optional=True, file=True),
    Option("insecure", bool, False, "do not verify the target's certificate (every report says so loudly)",
           group=TLS),
    Option("max_body_mb", float, 20.0, "largest response body read (default 20 MB)", group=POLITE, metavar="N"),
    Option("max_redirects", int, 5, "redirects followed per request (default 5)", group=POLITE, metavar="N"),
    Option("max_rps", float, None, "global request-rate limit (requests per second)", group=POLITE, metavar="N",
           optional=True),
    Option("max_concurrency", int, 4, "requests in flight at once (default 4)", group=POLITE, metavar="N"),
    Option("max_retry_wait", float, 30.0, "longest wait a 429 Retry-After may ask for before the check reports "
           "it (default 30 s)", group=POLITE, metavar="S"),
    Option("baseline", Path, None, "a previous summary.json: the exit code reflects only regressions against it",
           metavar="SUMMARY", optional=True, file=True),
    Option("export_timeout", float, 120.0, "seconds a bulk export may take before the suite gives up on it "
           "(default 120)", metavar="S"),
    Option("export_validate_lines", int, 5000, "lines per export file validated against the R4 JSON Schema and invariants "
           "(0: all; default 5000)", metavar="N"),
    Option("export_group", str, None, "export this existing Group (default: a group the suite creates, else one "
           "it finds with Group?type=person)", metavar="ID",
           optional=True),
)
BY_NAME = {o.name: o for o in OPTIONS}
NAMES = tuple(BY_NAME)


def _secrets(self: Any) -> list[str]:
    """Every secret value, for redaction of anything the suite writes."""
    return [v for v in (getattr(self, o.name) for o in OPTIONS if o.secret) if v]


def _validated(self: Any) -> Any:
    """The settings, or SettingsError naming the first rule they break."""
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
    for o in OPTIONS:
        value = getattr(self, o.name)
        if o.file and value and not Path(value).is_file():
            raise SettingsError(f"{o.name.replace('_', ' ')} file not found: {value}")
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


def _annotation(o: Option) -> Any:
    kind = tuple[str, ...] if o.type is tuple else o.type
    return kind | None if o.optional else kind


Settings = make_dataclass(
    "Settings", [(o.name, _annotation(o), field(default=o.default, repr=not o.secret)) for o in OPTIONS],
    bases=(Brief,),      # Brief: a fixture of @given checks, printed as its repr (no secrets)
    frozen=True, namespace={"secrets": _secrets, "validated": _validated,
                            "__doc__": "The settings of one run (fields: conformance.options.OPTIONS)."})
Settings.__module__ = __name__


# -- loading -------------------------------------------------------------------------

def _convert(values: Mapping[str, Any], origin: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in BY_NAME:
            raise SettingsError(f"{origin}: unknown setting {key!r}")
        if value is None:
            continue
        try:
            out[name] = BY_NAME[name].convert(value)
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
         config_path: Path | None = None) -> Any:
    """Merge the three sources; later ones win: file < environment < command line."""
    env = os.environ if env is None else env
    path = config_path or Path(env.get(ENV_PREFIX + "CONFIG", CONFIG_FILE))
    merged: dict[str, Any] = {}
    merged.update(from_file(path))
    merged.update(from_env({k: v for k, v in env.items() if k != ENV_PREFIX + "CONFIG"}))
    merged.update(_convert(dict(cli or {}), "command line"))
    return Settings(**merged).validated()


def max_body_bytes(settings: Any) -> int:
    return int(settings.max_body_mb * 1024 * 1024)


# -- the command lines ---------------------------------------------------------------

def _add(add: Callable[..., Any], o: Option, flag: str, dest: str) -> None:
    """One option on an argparse parser or a pytest group (both take argparse's keywords)."""
    style = o.style
    if style == FLAG:
        add(flag, action="store_true", default=None, dest=dest, help=o.help)
    elif style == NEGATED_FLAG:
        add(flag, action="store_false", default=None, dest=dest, help=o.help)
    elif style == REPEATED:
        add(flag, action="append", default=None, dest=dest, metavar=o.metavar, choices=o.choices, help=o.help)
    else:
        add(flag, default=None, dest=dest, metavar=o.metavar, help=o.help)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every setting as a ``fhir-conformance run`` option (values are converted by ``load``)."""
    groups: dict[str, Any] = {"": parser}
    for o in OPTIONS:
        target = groups.get(o.group) or groups.setdefault(o.group, parser.add_argument_group(o.group))
        _add(target.add_argument, o, o.option, o.name)


def from_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line (None where not given)."""
    return {o.name: getattr(args, o.name) for o in OPTIONS}


def pytest_dest(o: Option) -> str:
    return "fhir_" + o.name


def add_pytest_options(group: Any) -> None:
    """Every setting as a ``--fhir-*`` pytest option (``pytest --fhir-target URL``)."""
    for o in OPTIONS:
        _add(group.addoption, o, o.pytest_option, pytest_dest(o))


def from_pytest(getoption: Callable[[str], Any]) -> dict[str, Any]:
    return {o.name: getoption(pytest_dest(o)) for o in OPTIONS}


# -- documentation -------------------------------------------------------------------

def _spelling(o: Option) -> tuple[str, str, str]:
    option = f"`{o.option}`" if o.style in (FLAG, NEGATED_FLAG) else f"`{o.option} {o.metavar or 'VALUE'}`"
    if o.style == REPEATED:
        option += " (repeatable)"
    env = {FLAG: f"`{o.env}=1`", NEGATED_FLAG: f"`{o.env}=0`"}.get(o.style, f"`{o.env}`")
    toml = {FLAG: f"`{o.name} = true`", NEGATED_FLAG: f"`{o.name} = false`",
            REPEATED: f'`{o.name} = ["…"]`'}.get(o.style, f"`{o.name}`")
    return option, env, toml


def markdown_table() -> str:
    """The README's settings table (a test keeps the README equal to it)."""
    rows = ["| setting | option | environment | `conformance.toml` | pytest plugin |",
            "| --- | --- | --- | --- | --- |"]
    for o in OPTIONS:
        option, env, toml = _spelling(o)
        plugin = option.replace(f"`{o.option}", f"`{o.pytest_option}").removesuffix(" (repeatable)")
        rows.append("| " + " | ".join([(o.label or o.help).replace("|", "\\|"), option, env, toml, plugin]) + " |")
    return "\n".join(rows)
