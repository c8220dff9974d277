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

from . import dates, db

log = logging.getLogger(__name__)

SPREAD_START = datetime(2019, 1, 1, tzinfo=timezone.utc)
SPREAD_SECONDS = int((datetime(2024, 6, 1, tzinfo=timezone.utc) - SPREAD_START).total_seconds())
BATCH = 1000
POPULATION_SEED = 20240602

NOW = datetime(2024, 6, 1, tzinfo=timezone.utc)  # the population's "today": no event after it
CONDITION_SYSTEMS = ("http://snomed.info/sct", "http://hl7.org/fhir/sid/icd-10-cm")
# (SNOMED code, ICD-10-CM code, text, youngest age at onset in years, oldest age at onset or None)
CONDITIONS = [("44054006", "E11.9", "Diabetes mellitus type 2", 30, None),
              ("38341003", "I10", "Hypertensive disorder", 30, None),
              ("195967001", "J45.909", "Asthma", 2, None),
              ("55822004", "E78.5", "Hyperlipidemia", 30, None),
              ("35489007", "F32.9", "Depressive disorder", 12, None),
              ("69896004", "M06.9", "Rheumatoid arthritis", 25, None),
              ("13645005", "J44.9", "Chronic obstructive lung disease", 40, None),
              ("65363002", "H66.90", "Otitis media", 0, 12),
              ("406506008", "F90.9", "Attention deficit hyperactivity disorder", 5, 17)]
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
# LOINC code, text, UCUM unit, category
OBSERVATIONS = [("8867-4", "Heart rate", "/min", "vital-signs"), ("8310-5", "Body temperature", "Cel", "vital-signs"),
                ("29463-7", "Body weight", "kg", "vital-signs"), ("8480-6", "Systolic blood pressure", "mm[Hg]", "vital-signs"),
                ("4548-4", "Hemoglobin A1c", "%", "laboratory"), ("2339-0", "Glucose", "mg/dL", "laboratory")]
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


def _date(text: str | None, default: datetime) -> datetime:
    """A FHIR date/dateTime as a UTC datetime (start of its range); ``default`` when absent or unreadable."""
    found = dates.span(text) if text else None
    return found[0] if found else default


def age_at(birth: datetime, when: datetime) -> float:
    return (when - birth).days / 365.25


def vital_range(code: str, age: float, gender: str) -> tuple[float, float]:
    """A plausible (low, high) for a LOINC vital sign or lab at this age and sex."""
    male = gender == "male"
    if code == "29463-7":  # body weight, kg
        if age < 1:
            return 3.0, 10.0
        if age < 13:
            typical = 2 * age + 8
            return typical * 0.8, typical * 1.25
        if age < 18:
            return (45.0, 85.0) if male else (40.0, 75.0)
        return (55.0, 130.0) if male else (45.0, 110.0)
    if code == "8867-4":  # heart rate, /min
        return (100.0, 160.0) if age < 1 else (75.0, 120.0) if age < 12 else (55.0, 100.0)
    if code == "8310-5":  # body temperature, Cel
        return 36.1, 37.8
    if code == "8480-6":  # systolic blood pressure, mm[Hg]
        return (70.0, 100.0) if age < 1 else (85.0, 115.0) if age < 13 else (100.0, 160.0 if age >= 40 else 140.0)
    if code == "4548-4":  # HbA1c, %
        return (4.5, 6.0) if age < 18 else (4.5, 9.5)
    return (70.0, 140.0) if age < 18 else (70.0, 200.0)  # glucose, mg/dL


def _event_window(birth: datetime, death: datetime | None) -> tuple[datetime, datetime]:
    """When this patient's recorded events fall: the 2019-2024 spread, within life (birth to now or death)."""
    end = min(death or NOW, NOW)
    start = max(birth, SPREAD_START)
    if start >= end:  # born after the spread ended (or died before it began): anywhere in life
        start = birth
    return start, max(end, start)


def _between(rng: random.Random, start: datetime, end: datetime) -> datetime:
    seconds = int((end - start).total_seconds())
    return start + timedelta(seconds=rng.randrange(seconds) if seconds > 0 else 0)


def compartment_for(patient: dict[str, Any]) -> Iterator[tuple[str, str, datetime, dict[str, Any]]]:
    """(rtype, id, lastUpdated, resource) for one Patient resource; its id seeds the generator.

    Every event lies between birth and now (or death); conditions suit the age at onset;
    vital signs suit age and sex; Observations carry a category (vital-signs, laboratory)."""
    patient_id = patient["id"]
    rng = random.Random(f"compartment:{patient_id}")
    birth = _date(patient.get("birthDate"), datetime(1970, 1, 1, tzinfo=timezone.utc))
    death = _date(patient.get("deceasedDateTime"), NOW) if patient.get("deceasedDateTime") else None
    gender = patient.get("gender", "unknown")
    start, end = _event_window(birth, death)
    subject = {"reference": f"Patient/{patient_id}"}
    child = age_at(birth, end) < 18
    for i in range(rng.randint(0, 1) if child else rng.randint(1, 3)):  # children: fewer chronic problems
        updated = _between(rng, start, end)
        age = age_at(birth, updated)
        # a condition fits from its youngest age at onset; a childhood one only while the patient is young
        suitable = [c for c in CONDITIONS if c[3] <= age and (c[4] is None or age <= c[4] + 8)]
        snomed, icd10, text, youngest, oldest = rng.choice(suitable or [CONDITIONS[7]])
        rid = f"{patient_id[:40]}-c{i}"
        earliest = min(birth + timedelta(days=int(youngest * 365.25) + 1), updated)
        latest = updated if oldest is None else min(updated, birth + timedelta(days=int((oldest + 1) * 365.25)))
        onset = _between(rng, max(earliest, updated - timedelta(days=900)) if oldest is None else earliest, latest)
        yield "Condition", rid, updated, {
            "resourceType": "Condition", "id": rid, "meta": {"lastUpdated": _instant(updated)},
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active" if oldest is None else "resolved"}]},
            "code": {"coding": [{"system": CONDITION_SYSTEMS[0], "code": snomed, "display": text},
                                {"system": CONDITION_SYSTEMS[1], "code": icd10, "display": text}], "text": text},
            "subject": subject, "onsetDateTime": _instant(onset),
            "category": [{"coding": [{"system": CATEGORY_SYSTEM,
                                      "code": random.Random(f"category:{rid}").choice(CONDITION_CATEGORIES)}]}],
        }
    for i in range(rng.randint(1, 4)):
        updated = _between(rng, start, end)
        code, text = rng.choice(ENCOUNTER_CLASSES)
        rid = f"{patient_id[:40]}-e{i}"
        begin = max(updated - timedelta(hours=rng.randint(1, 72)), birth)
        yield "Encounter", rid, updated, {
            "resourceType": "Encounter", "id": rid, "meta": {"lastUpdated": _instant(updated)},
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": code, "display": text},
            "subject": subject,
            "period": {"start": _instant(begin), "end": _instant(min(begin + timedelta(minutes=30), end))},
            "type": [{"coding": [dict(zip(("system", "code", "display"), (
                "http://snomed.info/sct", *random.Random(f"type:{rid}").choice(ENCOUNTER_TYPES))))]}],
        }
    for i in range(rng.randint(2, 6)):
        updated = _between(rng, start, end)
        code, text, unit, category = rng.choice(OBSERVATIONS)
        rid = f"{patient_id[:40]}-o{i}"
        effective = max(updated - timedelta(hours=rng.randint(0, 48)), birth)
        low, high = vital_range(code, age_at(birth, effective), gender)
        yield "Observation", rid, updated, {
            "resourceType": "Observation", "id": rid, "meta": {"lastUpdated": _instant(updated)},
            "status": "final",
            "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": category,
                                      "display": "Vital Signs" if category == "vital-signs" else "Laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": text}], "text": text},
            "subject": subject, "effectiveDateTime": _instant(effective),
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
        birth = datetime(1930, 1, 1) + timedelta(days=rng.randrange(34000))
        patient = {
            "resourceType": "Patient", "id": pid, "active": True,
            "identifier": [{"system": "http://schemas.canvasmedical.com/fhir/systems/internal",
                            "value": f"POP{i:07d}"}],
            "name": [{"use": "official", "family": rng.choice(FAMILY), "given": [rng.choice(GIVEN)]}],
            "gender": gender, "birthDate": birth.date().isoformat(),
        }
        if birth.year < 1955 and random.Random(f"deceased:{pid}").random() < 0.1:  # a few died, in 2019-2024
            died = _between(random.Random(f"died:{pid}"), SPREAD_START, NOW)
            patient["deceasedDateTime"] = _instant(died)
        yield pid, updated, patient


def _batches(items: Iterable[Any], size: int = BATCH) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _insert_compartment(conn: sqlite3.Connection, patients: Iterable[dict[str, Any]]) -> int:
    rows = [(rtype, rid, patient["id"], updated.isoformat(), json.dumps(body, separators=(",", ":")))
            for patient in patients for rtype, rid, updated, body in compartment_for(patient)]
    conn.executemany("INSERT OR IGNORE INTO compartment_resource (rtype, id, patient_id, last_updated, body)"
                     " VALUES (?, ?, ?, ?, ?)", rows)
    return len(rows)


def ensure_compartments(database: db.Store) -> int:
    """Compartment data for every stored Patient that has none yet; returns rows added."""
    with database.read() as conn:
        missing = [{**json.loads(body), "id": pid} for pid, body in conn.execute(
            "SELECT id, body FROM resource r WHERE rtype = 'Patient' AND NOT EXISTS"
            " (SELECT 1 FROM compartment_resource c WHERE c.patient_id = r.id) ORDER BY seq")]
    added = 0
    for batch in _batches(missing):
        with database.write() as conn:
            added += _insert_compartment(conn, batch)
    return added


# ---- what other modules read: a patient's compartment (export, cohorts) ---------------------------


def compartment_rows(conn: sqlite3.Connection, patient_ids: list[str], since: str | None = None,
                     until: str | None = None) -> Iterator[tuple[str, str, str, str]]:
    """(rtype, id, last_updated text, body text) of the patients' compartments in the window, by type."""
    where, args = db.window(since, until)
    marks = ",".join("?" * len(patient_ids))
    yield from conn.execute(f"SELECT rtype, id, last_updated, body FROM compartment_resource WHERE patient_id IN"
                            f" ({marks}){where} ORDER BY rtype, seq", [*patient_ids, *args])


def compartment_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """How many compartment resources of each type are stored."""
    return dict(conn.execute("SELECT rtype, COUNT(*) FROM compartment_resource GROUP BY rtype").fetchall())


def compartment_stamp(conn: sqlite3.Connection, rtype: str) -> tuple[Any, ...]:
    """Changes whenever a compartment resource of ``rtype`` is added (cache key)."""
    return tuple(conn.execute("SELECT COUNT(*), MAX(seq) FROM compartment_resource WHERE rtype = ?",
                              (rtype,)).fetchone())


def compartment_bodies(conn: sqlite3.Connection, rtype: str) -> Iterator[tuple[str, str, str]]:
    """(id, patient id, body text) of every compartment resource of ``rtype``, in creation order."""
    yield from conn.execute("SELECT id, patient_id, body FROM compartment_resource WHERE rtype = ? ORDER BY seq",
                            (rtype,))


def add_population(app: Flask, n: int, seed: int = POPULATION_SEED) -> str | None:
    """N generated patients, their compartments and one Patient Group of all of them (once per DB)."""
    from .http import FhirError
    from .resources import group, group_rules

    database: db.Store = db.get_store(app)
    key = f"population:{seed}:{n}"
    with database.read() as conn:
        done = conn.execute("SELECT value FROM population_state WHERE key = ?", (key,)).fetchone()
    if done:
        return done[0]
    for batch in _batches(generated_patients(n, seed)):
        with database.write() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO resource (rtype, id, version, last_updated, body) VALUES ('Patient', ?, 1, ?, ?)",
                [(pid, updated.isoformat(), json.dumps(body, separators=(",", ":"))) for pid, updated, body in batch])
            conn.executemany(
                "INSERT INTO search_string (rtype, id, param, value, value_lower) VALUES ('Patient', ?, 'name', ?, ?)",
                [(pid, v, v.lower()) for pid, _, body in batch
                 for v in (body["name"][0]["family"], *body["name"][0]["given"])])
            _insert_compartment(conn, [body for _, _, body in batch])
    gid = f"population-{seed}-{n}"
    body = {"resourceType": "Group", "type": group_rules.PATIENT_GROUP, "actual": True,
            "name": f"Generated population of {n}",
            "member": [{"entity": {"reference": f"Patient/{pid}"}} for pid, _, _ in generated_patients(n, seed)]}
    with app.app_context(), database.write() as conn:
        try:
            group.save(conn, gid, group_rules.rules(group_rules.structure(body)), db.get(conn, "Group", gid))
        except FhirError as exc:  # pragma: no cover - generated data is valid
            log.warning("population group skipped: %s", exc.text)
            return None
        conn.execute("INSERT OR REPLACE INTO population_state VALUES (?, ?)", (key, gid))
    log.info("population of %d patients loaded; Group/%s", n, gid)
    return gid


def setup(app: Flask, patients: int = 0) -> None:
    """The optional generated population, then compartment data for every patient."""
    database = db.get_store(app)
    if patients > 0:
        add_population(app, patients)
    ensure_compartments(database)
