"""Task search on the mock at 10k and 100k tasks: an owner + status query, through HTTP.

The population is written straight through the store (one transaction, the same
index rows the API writes); the query then goes through the Flask test client, so
the figure includes routing, auth, parsing, SQL and rendering of one page.

    .venv/bin/python benchmarks/bench_task_search.py [sizes...]
"""
from __future__ import annotations

import json
import random
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mock_server import MockConfig, create_app  # noqa: E402
from mock_server.resources import task  # noqa: E402

STATUSES = ("requested", "completed", "cancelled")


def populate(app, start: int, n: int, practitioners: list[str], patients: list[str]) -> None:
    rng = random.Random(n)
    db = app.extensions["fhir.store"]
    now = datetime.now(timezone.utc)
    with app.app_context(), db.write() as conn:
        first = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM resource").fetchone()[0] + 1
        rows, index = [], []
        for i in range(n):
            tid = f"bench{start + i:07d}"
            due = (now + timedelta(hours=rng.randrange(-5000, 5000))).isoformat()
            content = {"status": rng.choice(STATUSES), "intent": "unknown", "description": f"Bench task {i}",
                       "requester": f"Practitioner/{rng.choice(practitioners)}",
                       "owner": f"Practitioner/{rng.choice(practitioners)}", "patient": f"Patient/{rng.choice(patients)}",
                       "group": None, "authoredOn": now.isoformat(), "due": due,
                       "labels": [f"label-{rng.randrange(20)}"], "notes": []}
            rows.append(("Task", tid, 1, now.isoformat(), json.dumps(content)))
            index.append((tid, first + i, content))
        conn.executemany("INSERT INTO resource (rtype, id, version, last_updated, body) VALUES (?, ?, ?, ?, ?)", rows)
        for tid, seq, content in index:
            task.write_index(conn, tid, seq, content, now)
        conn.execute("ANALYZE")


def time_query(client, query: str, repeat: int = 50) -> tuple[float, float, int]:
    headers = {"Authorization": "Bearer dev-token"}
    total = client.get(f"/Task?{query}", headers=headers).get_json()["total"]   # warm
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        r = client.get(f"/Task?{query}", headers=headers)
        samples.append((time.perf_counter() - started) * 1000)
        assert r.status_code == 200
    return statistics.median(samples), max(samples), total


def main(sizes: list[int]) -> None:
    app = create_app(MockConfig(db=":memory:"))
    client = app.test_client()
    headers = {"Authorization": "Bearer dev-token"}
    practitioners = [r["resource"]["id"] for r in client.get("/Practitioner?_count=100", headers=headers).get_json()["entry"]]
    patients = [r["resource"]["id"] for r in client.get("/Patient?_count=100", headers=headers).get_json()["entry"]]
    owner = practitioners[3]
    have = 0
    assert sizes == sorted(sizes), "sizes grow"
    for size in sizes:
        started = time.perf_counter()
        populate(app, have, size - have, practitioners, patients)
        built = time.perf_counter() - started
        have = size
        for query in (f"owner=Practitioner/{owner}&status=requested",
                      f"owner=Practitioner/{owner}&status=requested&_sort=-due-date",
                      "label=label-7&status=completed"):
            median, worst, total = time_query(client, query)
            print(f"{size:>7} tasks (+{built:5.1f}s to build)  {query:<60} total={total:<6} "
                  f"median {median:6.2f} ms  max {worst:6.2f} ms")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [10_000, 100_000])
