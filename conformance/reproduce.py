"""Reproduction of a failure as the sequence of requests that led to it.

A single curl cannot reproduce a failure that needs state built before it (a
responsibility conflict needs the team holding it). So each failing check keeps the
exchanges that led to it: those made by the shared fixtures it used (the state it
relied on), then its own, up to and including the exchange that shows the breach
(for a Hypothesis check: the last, minimal example only).

Clean-up cannot make the reproduction impossible to follow, because the sequence
never relies on what the run left behind: it creates its own resources again, and
every id or status URL the target handed out during the run (``Location``,
``Content-Location``) is captured from the replayed answer and substituted into the
later requests. The token is never written: scripts read ``${FHIR_CONFORMANCE_TOKEN}``.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .http import BODY_PREVIEW, Exchange

SKIP_HEADERS = {"content-length", "host", "accept-encoding", "connection", "user-agent"}
REPRODUCTION_FILE = "reproduction.json"


@dataclass
class Step:
    """One request of a sequence, with what the run saw in answer."""

    method: str
    url: str
    headers: dict[str, str]
    body: str
    status: int | None
    location: str | None = None          # Location / Content-Location the target answered
    body_truncated: bool = False

    @classmethod
    def of(cls, ex: Exchange) -> "Step":
        lower = {k.lower(): v for k, v in ex.response_headers.items()}
        headers = {k: v for k, v in ex.request_headers.items() if k.lower() not in SKIP_HEADERS}
        return cls(ex.method, ex.url, headers, ex.request_body, ex.status,
                   lower.get("location") or lower.get("content-location"),
                   len(ex.request_body) >= BODY_PREVIEW)


@dataclass
class Reproduction:
    """What ``replay`` needs: the target, the steps, which step shows the breach."""

    check_id: str
    target: str
    requirement: str
    message: str
    steps: list[Step] = field(default_factory=list)

    @property
    def failing(self) -> Step | None:
        return self.steps[-1] if self.steps else None


def sequence(prelude: Iterable[Exchange], own: Iterable[Exchange], failing: Exchange | None) -> list[Exchange]:
    """The exchanges that led to a failure: shared set-up, then the check's own up to the failing one."""
    seen: set[int] = set()
    out: list[Exchange] = []
    for ex in [*prelude, *own]:
        if id(ex) in seen:
            continue
        seen.add(id(ex))
        out.append(ex)
        if failing is not None and ex is failing:
            break
    if failing is not None and id(failing) not in seen:
        out.append(failing)
    return out


# -- ids handed out by the target ------------------------------------------------------

_ID_IN_LOCATION = re.compile(r"/([A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/?#]+)?/?$")


def _captures(steps: list[Step]) -> list[tuple[int, str, str, str]]:
    """(step index, variable, literal, kind): values handed out by the target, to substitute later."""
    found = []
    for i, step in enumerate(steps):
        if not step.location or step.status is None or step.status >= 300:
            continue
        m = _ID_IN_LOCATION.search(step.location.split("?")[0])
        if m and step.method == "POST" and step.status == 201:
            found.append((i, f"{m.group(1).upper()}_{i + 1}", m.group(2), "id"))
        elif step.status == 202:
            found.append((i, f"STATUS_URL_{i + 1}", step.location, "url"))
    return found


def _later_uses(steps: list[Step], captures: list[tuple[int, str, str, str]]) -> list[tuple[int, str, str, str]]:
    """Only the captures a later request mentions."""
    used = []
    for i, var, literal, kind in captures:
        if any(literal in s.url or literal in s.body for s in steps[i + 1:]):
            used.append((i, var, literal, kind))
    return used


# -- the shell script --------------------------------------------------------------------

def _sh(text: str, subs: list[tuple[str, str]]) -> str:
    """A shell word for ``text`` with each literal replaced by its "${VAR}"."""
    if not subs:
        return shlex.quote(text)
    pattern = re.compile("|".join(re.escape(lit) for lit, _ in sorted(subs, key=lambda s: -len(s[0]))))
    names = dict(subs)
    parts, last = [], 0
    for m in pattern.finditer(text):
        if m.start() > last:
            parts.append(shlex.quote(text[last:m.start()]))
        parts.append(f'"${{{names[m.group(0)]}}}"')
        last = m.end()
    if last < len(text):
        parts.append(shlex.quote(text[last:]))
    return "".join(parts) or "''"


def script(rep: Reproduction) -> str:
    """A POSIX shell script replaying the whole sequence with curl (token from the environment)."""
    steps = rep.steps
    captures = _later_uses(steps, _captures(steps))
    base = rep.target.rstrip("/")
    lines = [
        "#!/bin/sh",
        f"# Replays the {len(steps)} request(s) that led check {rep.check_id} to fail:",
        f"#   [{rep.requirement}] {rep.message.splitlines()[0][:200] if rep.message else ''}",
        "# Resources are created afresh; ids the target hands out are captured and reused.",
        "# Usage: FHIR_CONFORMANCE_TOKEN=... sh this-script   (FHIR_CONFORMANCE_TARGET overrides the target)",
        "set -eu",
        f"BASE=\"${{FHIR_CONFORMANCE_TARGET:-{base}}}\"",
        ': "${FHIR_CONFORMANCE_TOKEN:?export FHIR_CONFORMANCE_TOKEN (the bearer token) first}"',
        'TMP=$(mktemp -d); trap \'rm -rf "$TMP"\' EXIT',
        "",
    ]
    subs: list[tuple[str, str]] = []
    for i, step in enumerate(steps):
        url = step.url
        if url.startswith(base):
            url_word = '"$BASE"' + _sh(url[len(base):], subs)
        else:
            url_word = _sh(url, subs)
        parts = ["curl", "-sS", "-o", '"$TMP/body"', "-D", '"$TMP/headers"', "-w", "'%{http_code}'",
                 "-X", step.method, url_word]
        for name, value in step.headers.items():
            if name.lower() == "authorization" and value.startswith("Bearer"):
                parts += ["-H", '"Authorization: Bearer ${FHIR_CONFORMANCE_TOKEN}"']
            else:
                parts += ["-H", shlex.quote(f"{name}: {value}")]
        if step.body:
            parts += ["--data-raw", _sh(step.body, subs)]
        short = step.url[len(base):] if step.url.startswith(base) else step.url
        note = " (body truncated in the record: not an exact replay)" if step.body_truncated else ""
        is_last = i == len(steps) - 1
        lines.append(f"# {i + 1}. {step.method} {short[:120]}  -> the run saw {step.status}{note}"
                     + ("   <- the failing request" if is_last else ""))
        lines.append("STATUS=$(" + " ".join(parts) + ")")
        lines.append(f'echo "{i + 1}. {step.method} {_echo_safe(short[:100])} -> $STATUS (the run saw {step.status})"')
        for ci, var, literal, kind in captures:
            if ci != i:
                continue
            if kind == "id":
                lines.append(f"{var}=$(sed -n 's#^[Ll]ocation:.*/[A-Za-z]*/\\([^/?[:space:]]*\\).*#\\1#p' "
                             f'"$TMP/headers" | head -n 1)')
            else:
                lines.append(f"{var}=$(sed -n 's#^[Cc]ontent-[Ll]ocation: *\\([^[:space:]]*\\).*#\\1#p' "
                             f'"$TMP/headers" | head -n 1)')
            subs.append((literal, var))
        if is_last:
            lines.append('cat "$TMP/headers" "$TMP/body"; echo')
        lines.append("")
    return "\n".join(lines)


def _echo_safe(text: str) -> str:
    return re.sub(r'["$`\\]', "_", text)


# -- storage -------------------------------------------------------------------------------

def save(path: Path, reproductions: Iterable[Reproduction], redact: Any = lambda s: s) -> None:
    data = {r.check_id: asdict(r) for r in reproductions}
    path.write_text(redact(json.dumps(data, indent=1, ensure_ascii=False)) + "\n", encoding="utf-8")


def load(report_dir: Path) -> dict[str, Reproduction]:
    path = Path(report_dir) / REPRODUCTION_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror} (is {report_dir} a report directory?)") from None
    except ValueError:
        raise ValueError(f"{path} is not JSON") from None
    out = {}
    for check_id, raw in data.items():
        steps = [Step(**s) for s in raw.pop("steps", [])]
        out[check_id] = Reproduction(**raw, steps=steps)
    return out


def replay(rep: Reproduction, send: Any, target: str | None = None) -> list[tuple[Step, int | None, str]]:
    """Re-send the steps through ``send(method, url, headers, body) -> (status, headers, body)``.

    Returns (step, status now, body now) per step; ids and status URLs the target hands
    out now replace the ones of the run, as in the shell script.
    """
    base_then = rep.target.rstrip("/")
    base_now = (target or rep.target).rstrip("/")
    captures = {i: (literal, kind) for i, _, literal, kind in _later_uses(rep.steps, _captures(rep.steps))}
    subs: dict[str, str] = {}
    out = []
    for i, step in enumerate(rep.steps):
        url, body = step.url, step.body
        for old, new in subs.items():
            url, body = url.replace(old, new), body.replace(old, new)
        if url.startswith(base_then):
            url = base_now + url[len(base_then):]
        status, headers, text = send(step.method, url, dict(step.headers), body)
        out.append((step, status, text))
        if i in captures and status is not None:
            literal, kind = captures[i]
            lower = {k.lower(): v for k, v in headers.items()}
            value = lower.get("location") if kind == "id" else lower.get("content-location")
            if value:
                m = _ID_IN_LOCATION.search(value.split("?")[0])
                subs[literal] = m.group(2) if kind == "id" and m else value
    return out
