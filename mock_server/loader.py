"""Load the bundled fixtures into an empty (or partly filled) database, idempotently by id."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from flask import Flask

from . import db
from .http import FhirError
from .resources import group, group_rules
from .resources.directory import index_for
from .variants import varies

log = logging.getLogger(__name__)
DIRECTORY_FILES = (("Practitioner", "practitioners.ndjson"), ("Patient", "patients.ndjson"))


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_fixtures(app: Flask, directory: Path | None) -> int:
    """Insert fixture resources missing from the store; returns how many were added."""
    if directory is None or not directory.is_dir():
        log.info("fixtures directory %s not found; starting without fixtures", directory)
        return 0
    database: db.Store = db.get_store(app)
    added = 0
    with app.app_context(), database.write() as conn:
        for rtype, filename in DIRECTORY_FILES:
            if rtype == "Practitioner" and varies("no-practitioners-with-create"):
                continue          # no Practitioner in the data (their teams are skipped below)
            path = directory / filename
            for resource in _read(path) if path.exists() else []:
                if not db.exists(conn, rtype, resource["id"]):
                    db.put(conn, rtype, resource["id"], resource, index_for(resource))
                    added += 1
        path = directory / "groups.ndjson"
        for resource in _read(path) if path.exists() else []:
            if db.exists(conn, "Group", resource["id"]):
                continue
            try:
                draft = group_rules.rules(group_rules.structure(resource))
                conn.execute("SAVEPOINT fixture")
                group.save(conn, resource["id"], draft, None)
                conn.execute("RELEASE fixture")
                added += 1
            except FhirError as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK TO fixture")
                    conn.execute("RELEASE fixture")
                log.warning("fixture Group/%s skipped: %s", resource["id"], exc.text)
    return added
