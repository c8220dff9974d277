"""A realistic, deterministic population: patients and their compartment resources.

Used two ways at start-up (``create_app``):

- every Patient in the store (the bundled fixtures, or anything loaded earlier) gets
  Conditions, Encounters and Observations generated from its id, so the same patient
  always has the same clinical data and ``_since`` has something to exclude;
- ``fhir-mock --patients N`` adds N generated patients (with their compartment data) and
  one Patient Group holding all of them, for benchmarks and large exports.

Everything is written in batches through generators, so memory stays bounded whatever N.
``meta.lastUpdated`` is spread over 2019-2024 (the fixture patients keep their load time).
"""
from __future__ import annotations

import json
import logging
import random
import sqlite3
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Iterator

from flask import Flask

from . import store

log = logging.getLogger(__name__)

COMPARTMENT_SCHEMA = """
CREATE TABLE IF NOT EXISTS compartment_resource (   -- Condition/Encounter/Observation of one patient
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    rtype TEXT NOT NULL,
    id TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    last_updated TEXT NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (rtype, id)
);
CREATE INDEX IF NOT EXISTS compartment_patient ON compartment_resource (patient_id);
CREATE TABLE IF NOT EXISTS population_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
COMPARTMENT_TYPES = ("Condition", "Encounter", "Observation")
SPREAD_START = datetime(2019, 1, 1, tzinfo=timezone.utc)
SPREAD_SECONDS = int((datetime(2024, 6, 1, tzinfo=timezone.utc) - SPREAD_START).total_seconds())
BATCH = 1000
POPULATION_SEED = 20240602

CONDITIONS = [("44054006", "Diabetes mellitus type 2"), ("38341003", "Hypertensive disorder"),
              ("195967001", "Asthma"), ("55822004", "Hyperlipidemia"), ("35489007", "Depressive disorder"),
              ("69896004", "Rheumatoid arthritis"), ("13645005", "Chronic obstructive lung disease")]
OBSERVATIONS = [("8867-4", "Heart rate", "/min", 55, 110), ("8310-5", "Body temperature", "Cel", 36, 39),
                ("29463-7", "Body weight", "kg", 3, 140), ("4548-4", "Hemoglobin A1c", "%", 4, 12),
                ("2339-0", "Glucose", "mg/dL", 60, 250), ("8480-6", "Systolic blood pressure", "mm[Hg]", 90, 180)]
ENCOUNTER_CLASSES = [("AMB", "ambulatory"), ("VR", "virtual"), ("HH", "home health")]
CONDITION_CATEGORIES = ["problem-list-item", "encounter-diagnosis"]
CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-category"
ENCOUNTER_TYPES = [("185349003", "Encounter for check up"), ("270427003", "Patient-initiated encounter"),
                   ("390906007", "Follow-up encounter")]
GIVEN = ["Ada", "Ben", "Cara", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lea", "Max", "Nia"]
FAMILY = ["Abbott", "Baker", "Chen", "Diaz", "Evans", "Fischer", "Gupta", "Hughes", "Ito", "Jensen", "Khan"]


def _instant(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _when(rng: random.Random) -> datetime:
    return SPREAD_START + timedelta(seconds=rng.randrange(SPREAD_SECONDS))


def compartment_for(patient_id: str) -> Iterator[tuple[str, str, datetime, dict[str, Any]]]:
    """(rtype, id, lastUpdated, resource) for one patient; the patient id seeds it."""
    rng = random.Random(f"compartment:{patient_id}")
    subject = {"reference": f"Patient/{patient_id}"}
    for i in range(rng.randint(1, 3)):
        updated = _when(rng)
        code, text = rng.choice(CONDITIONS)
        rid = f"{patient_id[:40]}-c{i}"
        yield "Condition", rid, updated, {
            "resourceType": "Condition", "id": rid, "meta": {"lastUpdated": _instant(updated)},
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": code, "display": text}], "text": text},
            "subject": subject, "onsetDateTime": _instant(updated - timedelta(days=rng.randint(0, 900))),
            # drawn from its own generator so the rest of the data stays as it was before categories
            "category": [{"coding": [{"system": CATEGORY_SYSTEM,
                                      "code": random.Random(f"category:{rid}").choice(CONDITION_CATEGORIES)}]}],
        }
    for i in range(rng.randint(1, 4)):
        updated = _when(rng)
        code, text = rng.choice(ENCOUNTER_CLASSES)
        rid = f"{patient_id[:40]}-e{i}"
        start = updated - timedelta(hours=rng.randint(1, 72))
        yield "Encounter", rid, updated, {
            "resourceType": "Encounter", "id": rid, "meta": {"lastUpdated": _instant(updated)},
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": code, "display": text},
            "subject": subject, "period": {"start": _instant(start), "end": _instant(start + timedelta(minutes=30))},
            "type": [{"coding": [dict(zip(("system", "code", "display"), (
                "http://snomed.info/sct", *random.Random(f"type:{rid}").choice(ENCOUNTER_TYPES))))]}],
        }
    for i in range(rng.randint(2, 6)):
        updated = _when(rng)
        code, text, unit, low, high = rng.choice(OBSERVATIONS)
        rid = f"{patient_id[:40]}-o{i}"
        yield "Observation", rid, updated, {
            "resourceType": "Observation", "id": rid, "meta": {"lastUpdated": _instant(updated)},
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": text}], "text": text},
            "subject": subject, "effectiveDateTime": _instant(updated - timedelta(hours=rng.randint(0, 48))),
            "valueQuantity": {"value": round(rng.uniform(low, high), 1), "unit": unit,
                              "system": "http://unitsofmeasure.org", "code": unit},
        }


def generated_patients(n: int, seed: int = POPULATION_SEED) -> Iterator[tuple[str, datetime, dict[str, Any]]]:
    """(id, lastUpdated, Patient) for N patients, deterministic for a seed."""
    rng = random.Random(seed)
    for i in range(n):
        pid = f"pop-{seed}-{i:07d}"
        updated = _when(rng)
        gender = rng.choice(["female", "male"])
        birth = datetime(1930, 1, 1) + timedelta(days=rng.randrange(33000))
        yield pid, updated, {
            "resourceType": "Patient", "id": pid, "active": True,
            "identifier": [{"system": "http://schemas.canvasmedical.com/fhir/systems/internal",
                            "value": f"POP{i:07d}"}],
            "name": [{"use": "official", "family": rng.choice(FAMILY), "given": [rng.choice(GIVEN)]}],
            "gender": gender, "birthDate": birth.date().isoformat(),
        }


def _batches(items: Iterable[Any], size: int = BATCH) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _insert_compartment(conn: sqlite3.Connection, patient_ids: Iterable[str]) -> int:
    rows = [(rtype, rid, pid, updated.isoformat(), json.dumps(body, separators=(",", ":")))
            for pid in patient_ids for rtype, rid, updated, body in compartment_for(pid)]
    conn.executemany("INSERT OR IGNORE INTO compartment_resource (rtype, id, patient_id, last_updated, body)"
                     " VALUES (?, ?, ?, ?, ?)", rows)
    return len(rows)


def ensure_compartments(db: store.Store) -> int:
    """Compartment data for every stored Patient that has none yet; returns rows added."""
    with db.read() as conn:
        missing = [pid for (pid,) in conn.execute(
            "SELECT id FROM resource r WHERE rtype = 'Patient' AND NOT EXISTS"
            " (SELECT 1 FROM compartment_resource c WHERE c.patient_id = r.id) ORDER BY seq")]
    added = 0
    for batch in _batches(missing):
        with db.write() as conn:
            added += _insert_compartment(conn, batch)
    return added


def add_population(app: Flask, n: int, seed: int = POPULATION_SEED) -> str | None:
    """N generated patients, their compartments and one Patient Group of all of them (once per DB)."""
    from .outcomes import FhirError
    from .resources import group, group_rules

    db: store.Store = app.extensions["fhir.store"]
    key = f"population:{seed}:{n}"
    with db.read() as conn:
        done = conn.execute("SELECT value FROM population_state WHERE key = ?", (key,)).fetchone()
    if done:
        return done[0]
    for batch in _batches(generated_patients(n, seed)):
        with db.write() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO resource (rtype, id, version, last_updated, body) VALUES ('Patient', ?, 1, ?, ?)",
                [(pid, updated.isoformat(), json.dumps(body, separators=(",", ":"))) for pid, updated, body in batch])
            conn.executemany(
                "INSERT INTO search_string (rtype, id, param, value, value_lower) VALUES ('Patient', ?, 'name', ?, ?)",
                [(pid, v, v.lower()) for pid, _, body in batch
                 for v in (body["name"][0]["family"], *body["name"][0]["given"])])
            _insert_compartment(conn, [pid for pid, _, _ in batch])
    gid = f"population-{seed}-{n}"
    body = {"resourceType": "Group", "type": "person", "actual": True, "name": f"Generated population of {n}",
            "member": [{"entity": {"reference": f"Patient/{pid}"}} for pid, _, _ in generated_patients(n, seed)]}
    with app.app_context(), db.write() as conn:
        try:
            group.save(conn, gid, group_rules.rules(group_rules.structure(body)), store.get(conn, "Group", gid))
        except FhirError as exc:  # pragma: no cover - generated data is valid
            log.warning("population group skipped: %s", exc.text)
            return None
        conn.execute("INSERT OR REPLACE INTO population_state VALUES (?, ?)", (key, gid))
    log.info("population of %d patients loaded; Group/%s", n, gid)
    return gid


def setup(app: Flask, patients: int = 0) -> None:
    """Schema, the optional generated population, then compartment data for every patient."""
    db: store.Store = app.extensions["fhir.store"]
    with db._lock:  # executescript commits on its own: run it outside any transaction
        db._conn().executescript(COMPARTMENT_SCHEMA)
    if patients > 0:
        add_population(app, patients)
    ensure_compartments(db)
