"""What a 429 asks the suite to wait, read from its headers and judged before it is believed.

Order: ``Retry-After`` (RFC 9110 §10.2.3: delta-seconds or an HTTP-date), then the IETF
``RateLimit`` / ``RateLimit-Reset`` fields (draft-ietf-httpapi-ratelimit-headers, both the
structured ``t=``/``reset=`` and the older separate-field forms) and ``X-RateLimit-Reset``;
without any of them the caller backs off on its own. A value that is malformed or absurd
(an epoch timestamp, a fraction, more than a day, garbage) is not obeyed: it is returned as
a *problem* for the report and the caller falls back to its own back-off.
"""

from __future__ import annotations

import email.utils
import re
import time
from dataclasses import dataclass
from typing import Mapping

MAX_PLAUSIBLE_WAIT = 86_400.0         # a day: beyond it a "delay" is an epoch timestamp or a mistake
EPOCH_THRESHOLD = 1_000_000_000       # X-RateLimit-Reset values this large are Unix times (GitHub style)
_RESET = re.compile(r"(?:^|[;,\s])(?:t|reset)\s*=\s*(\d+)")


@dataclass(frozen=True)
class Asked:
    """What the answer asked for: seconds to wait (None: back off on your own), a sustainable rate
    (from ``RateLimit-Policy``, requests per second), and a problem with the headers, if any."""

    wait: float | None = None
    rate: float | None = None
    problem: str | None = None


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value, or None when absent or not believable."""
    return judge_retry_after(value, now)[0]


def judge_retry_after(value: str | None, now: float | None = None) -> tuple[float | None, str | None]:
    """(seconds, problem): a valid value gives seconds; a malformed or absurd one gives a problem."""
    if value is None or not value.strip():
        return None, None
    text = value.strip()
    if text.isdigit():
        seconds = float(text)
        if seconds > MAX_PLAUSIBLE_WAIT:
            hint = " (an epoch timestamp?)" if seconds > EPOCH_THRESHOLD else ""
            return None, f"Retry-After {text!r} asks for more than a day{hint}"
        return seconds, None
    if re.fullmatch(r"[+-]?\d*\.\d+|[+-]\d+", text):
        return None, f"Retry-After {text!r} is not delta-seconds (a non-negative integer)"
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        when = None
    if when is None:
        return None, f"Retry-After {text[:60]!r} is neither delta-seconds nor an HTTP-date"
    now = time.time() if now is None else now
    seconds = max(0.0, when.timestamp() - now)
    if seconds > MAX_PLAUSIBLE_WAIT:
        return None, f"Retry-After {text!r} is more than a day away"
    return seconds, None


def _reset_seconds(value: str, now: float) -> float | None:
    seconds = float(value)
    if seconds > EPOCH_THRESHOLD:        # X-RateLimit-Reset as a Unix time
        seconds = max(0.0, seconds - now)
    return seconds if seconds <= MAX_PLAUSIBLE_WAIT else None


def policy_rate(value: str) -> float | None:
    """Requests per second a ``RateLimit-Policy`` allows (``"default";q=100;w=60`` or ``100;w=60``)."""
    quota = re.search(r"\bq\s*=\s*(\d+)", value) or re.match(r"\s*(\d+)\s*;", value)
    window = re.search(r"\bw\s*=\s*(\d+)", value)
    if not (quota and window) or int(window.group(1)) == 0:
        return None
    return int(quota.group(1)) / int(window.group(1))


def asked_by(headers: Mapping[str, str], now: float | None = None) -> Asked:
    """What a 429's headers ask (see the module docstring for the order)."""
    now = time.time() if now is None else now
    rate = policy_rate(headers.get("ratelimit-policy", ""))
    wait, problem = judge_retry_after(headers.get("retry-after"), now)
    if wait is not None or problem is not None:
        return Asked(wait, rate, problem)
    candidates = []
    structured = _RESET.search(headers.get("ratelimit", ""))
    if structured:
        candidates.append(structured.group(1))
    for name in ("ratelimit-reset", "x-ratelimit-reset"):
        if headers.get(name, "").strip().isdigit():
            candidates.append(headers[name].strip())
    for candidate in candidates:
        seconds = _reset_seconds(candidate, now)
        if seconds is not None:
            return Asked(seconds, rate, None)
    return Asked(None, rate, None)
