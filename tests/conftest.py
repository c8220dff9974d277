"""flaskr-style fixtures for the mock server's own tests."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from mock_server import MockConfig, create_app

FIXTURES = Path(__file__).resolve().parents[1] / "mock_server" / "fixtures"


def auth(token: str = "dev-token") -> dict[str, str]:
    """Authorization header for a bearer token."""
    return {"Authorization": f"Bearer {token}"}


def fixture_resources(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines() if line.strip()]


PRACTITIONERS = fixture_resources("practitioners.ndjson")
PATIENTS = fixture_resources("patients.ndjson")
GROUPS = fixture_resources("groups.ndjson")


def team(name: str = "A Test Team", responsibilities: tuple[str, ...] = (), members: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    """A valid Team payload; members are practitioner ids."""
    body: dict[str, Any] = {"resourceType": "Group", "type": "practitioner", "actual": True, "name": name}
    if responsibilities:
        body["characteristic"] = [
            {"code": {"text": "responsibility"}, "valueCodeableConcept": {"text": r}, "exclude": False}
            for r in responsibilities
        ]
    if members:
        body["member"] = [{"entity": {"reference": f"Practitioner/{m}", "type": "Practitioner"}} for m in members]
    body.update(extra)
    return body


def patient_group(name: str = "A Patient Group", members: tuple[str, ...] = ()) -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": "Group", "type": "person", "actual": True, "name": name}
    if members:
        body["member"] = [{"entity": {"reference": f"Patient/{m}"}} for m in members]
    return body


def assert_outcome(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The response has ``status`` and an OperationOutcome body with an error issue."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert response.headers["Content-Type"].startswith("application/fhir+json")
    body = response.get_json(force=True)
    assert body["resourceType"] == "OperationOutcome"
    issue = body["issue"][0]
    assert issue["severity"] == "error"
    if code:
        assert issue["code"] == code, issue
    return body


@pytest.fixture
def make_app() -> Callable[..., Flask]:
    """Factory for apps with an in-memory DB and the bundled fixtures; kwargs go to MockConfig."""
    apps: list[Flask] = []

    def make(**kwargs: Any) -> Flask:
        kwargs.setdefault("db", ":memory:")
        app = create_app(MockConfig(**kwargs))
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["fhir.store"].close()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def create(client: FlaskClient) -> Callable[[dict[str, Any]], str]:
    """POST a group that must succeed; returns its id."""

    def do(body: dict[str, Any]) -> str:
        r = client.post("/Group", json=body, headers=auth())
        assert r.status_code == 201, r.get_data(as_text=True)
        return r.headers["Location"].rsplit("/", 1)[1]

    return do


# -- the deviation matrix, printed at the end of the session ---------------------

_MATRIX: list[tuple[str, str, str, int]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collect matrix rows (also from xdist workers, whose reports reach the controller)."""
    if report.when == "call":
        _MATRIX.extend(value for key, value in report.user_properties if key == "deviation_matrix")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _MATRIX:
        return
    write = terminalreporter.write_line
    write("")
    write(f"deviation matrix: {sum(r[2] == 'caught' for r in _MATRIX)}/{len(_MATRIX)} caught")
    write(f"{'deviation':<40} {'breaks':<30} {'result':<8} failing checks")
    for name, breaks, result, checks in sorted(_MATRIX):
        write(f"{name:<40} {breaks:<30} {result:<8} {checks}")
