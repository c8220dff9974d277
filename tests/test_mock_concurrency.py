"""Responsibility uniqueness under concurrent requests, against real waitress threads and a file DB."""
from __future__ import annotations

import sqlite3
import threading

import httpx
import pytest

from conftest import auth, team
from mock_server import MockConfig
from mock_server.server import run_in_thread

THREADS = 16
RESPONSIBILITIES = ("COLLECT_SPECIMENS_FROM_PATIENT", "COMPLETE_OPEN_LAB_ORDERS", "SCHEDULE_LAB_VISITS_FOR_PATIENT")


def _race(url: str, make_body) -> list[httpx.Response]:  # type: ignore[no-untyped-def]
    barrier = threading.Barrier(THREADS)
    results: list[httpx.Response | BaseException] = [None] * THREADS  # type: ignore[list-item]

    def worker(i: int) -> None:
        with httpx.Client(timeout=30) as c:
            body = make_body(i)
            barrier.wait()
            try:
                results[i] = c.request(body[0], url.format(i=i), json=body[1], headers=auth())
            except BaseException as exc:  # noqa: BLE001 - reported below
                results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(isinstance(r, httpx.Response) for r in results), results
    return results  # type: ignore[return-value]


@pytest.fixture(scope="module")
def server(tmp_path_factory):  # type: ignore[no-untyped-def]
    db = tmp_path_factory.mktemp("db") / "mock.sqlite3"
    with run_in_thread(MockConfig(db=str(db)), threads=THREADS) as base:
        yield base, db


ROUNDS = 4


@pytest.mark.parametrize("responsibility", RESPONSIBILITIES)
def test_concurrent_creates_claim_once(server, responsibility):
    """Several rounds: race, check exactly one holder, then the winner drops it and the next round races again."""
    base, db = server
    for rnd in range(ROUNDS):
        prefix = f"Race {responsibility} r{rnd} "
        responses = _race(f"{base}/Group", lambda i: ("POST", team(name=f"{prefix}{i}", responsibilities=(responsibility,))))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201] + [422] * (THREADS - 1), statuses
        for r in responses:
            if r.status_code == 422:
                assert r.json()["issue"][0]["code"] == "business-rule"
                assert responsibility in r.json()["issue"][0]["details"]["text"]
        winner = next(r for r in responses if r.status_code == 201).headers["Location"].rsplit("/", 1)[1]
        with sqlite3.connect(db) as conn:
            holders = conn.execute("SELECT group_id FROM responsibility WHERE name = ?", (responsibility,)).fetchall()
            stored = conn.execute(
                "SELECT COUNT(*) FROM search_string WHERE param = 'name' AND value LIKE ?", (f"{prefix}%",)
            ).fetchone()[0]
        assert holders == [(winner,)] and stored == 1
        bundle = httpx.get(f"{base}/Group", params={"name": prefix.strip()}, headers=auth()).json()
        assert bundle["total"] == 1
        assert bundle["entry"][0]["resource"]["characteristic"][0]["valueCodeableConcept"]["text"] == responsibility
        # free it for the next round
        drop = httpx.put(f"{base}/Group/{winner}", json=team(name=f"{prefix}done", id=winner), headers=auth())
        assert drop.status_code == 200


def test_concurrent_updates_by_id(server):
    base, db = server
    ids = []
    for i in range(THREADS):
        r = httpx.post(f"{base}/Group", json=team(name=f"Claimer {i}"), headers=auth())
        ids.append(r.headers["Location"].rsplit("/", 1)[1])
    resp = "POPULATION_HEALTH_CAMPAIGN_OUTREACH"
    barrier = threading.Barrier(THREADS)
    statuses: list[int] = [0] * THREADS

    def worker(i: int) -> None:
        with httpx.Client(timeout=30) as c:
            barrier.wait()
            statuses[i] = c.put(f"{base}/Group/{ids[i]}", json=team(name=f"Claimer {i}", responsibilities=(resp,), id=ids[i]), headers=auth()).status_code

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(statuses) == [200] + [422] * (THREADS - 1)
    with sqlite3.connect(db) as conn:
        assert len(conn.execute("SELECT group_id FROM responsibility WHERE name = ?", (resp,)).fetchall()) == 1


def test_concurrent_creates_with_memory_db():
    """The in-memory store (one locked connection) is just as strict."""
    with run_in_thread(MockConfig(db=":memory:"), threads=THREADS) as base:
        responses = _race(f"{base}/Group", lambda i: ("POST", team(name=f"Mem {i}", responsibilities=("PROCESS_CHANGE_REQUESTS",))))
        assert sorted(r.status_code for r in responses) == [201] + [422] * (THREADS - 1)
