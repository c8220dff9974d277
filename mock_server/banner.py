"""The start-up banner: where the mock is, what data it holds, which credentials open it.

Secrets are printed only for the built-in development credentials (they are public
anyway); credentials given on the command line are named, never echoed.
"""
from __future__ import annotations

from flask import Flask

from . import db, population
from .urls import public_base

COUNTED = ("Patient", "Practitioner", "Group", "Task")


def _counts(app: Flask) -> str:
    with db.get_store(app).read() as conn:
        rows = db.counts(conn)
        compartment = population.compartment_counts(conn)
    parts = [f"{rows.get(t, 0)} {t}" for t in COUNTED]
    parts += [f"{n} {t}" for t, n in sorted(compartment.items())]
    return ", ".join(parts)


def text(app: Flask) -> str:
    """Lines describing the running mock (base URL, data, credentials, export directory)."""
    from .bulk.exporter import export_dir

    config = app.config["MOCK"]
    lines = [f"  base URL:    {public_base(app)}" + ("" if config.base_url else " (the listening address; "
                                                      "set --base-url when clients reach it by another name)"),
             f"  data:        {_counts(app)}",
             f"  exports in:  {export_dir(app)}"]
    if config.dev_credentials:
        lines.append("  credentials: built-in development credentials (do not expose this server):")
        lines += [f"               bearer token {t} ({s or 'full access'})" for t, s in config.tokens.items()]
        lines += [f"               client {c} / secret {secret} at {public_base(app)}/auth/token/"
                  for c, (secret, _) in config.clients.items()]
    else:
        lines.append("  credentials: built-in development credentials are OFF; active:")
        lines += [f"               {len(config.tokens)} bearer token(s) given with --token"] if config.tokens else []
        lines += [f"               client {c} ({s or 'full access'}) given with --client"
                  for c, (_, s) in config.clients.items()]
        lines += [f"               SMART Backend Services client {c} ({s or 'full access'}) given with --jwks-client"
                  for c, (_, s) in config.jwks_clients.items()]
    if config.variants:
        lines.append(f"  variants:    {', '.join(sorted(config.variants))} (legal choices)")
    if config.deviations:
        lines.append(f"  deviations:  {', '.join(sorted(config.deviations))} (rules broken on purpose)")
    return "\n".join(lines)
