"""The mock as users start it: relative paths, another working directory, an installed wheel (SPEC §7).

Real processes (``python -m mock_server`` / the wheel's ``fhir-mock``) started from a
directory that is not the repository.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from conftest import GROUPS, PATIENTS

ROOT = Path(__file__).resolve().parents[1]
TOKEN = {"Authorization": "Bearer dev-token"}
PATIENT_GROUP = next(g["id"] for g in GROUPS if g["type"] == "person")


def _start(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "listening on" in line:
            return proc, line.strip().rsplit(" ", 1)[-1]
    raise AssertionError(f"fhir-mock did not start: {''.join(seen)[-2000:]}")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _export_files(http: httpx.Client, base: str, gid: str) -> dict[str, bytes]:
    """Kick off, poll and download every file of a Group export; {type: file content}."""
    kick = http.get(f"{base}/Group/{gid}/$export", headers={**TOKEN, "Prefer": "respond-async"})
    assert kick.status_code == 202, kick.text
    for _ in range(600):
        status = http.get(kick.headers["Content-Location"], headers=TOKEN)
        if status.status_code == 200:
            break
        assert status.status_code == 202, status.text
        time.sleep(0.05)
    else:
        raise AssertionError("export did not complete")
    files = {}
    for entry in status.json()["output"]:
        got = http.get(entry["url"], headers=TOKEN)
        assert got.status_code == 200, (entry["url"], got.status_code, got.text[:300])
        assert got.content.count(b"\n") == entry["count"]
        files[entry["type"]] = got.content
    return files


def test_relative_db_from_another_directory_serves_every_export_file(tmp_path: Path) -> None:
    work = tmp_path / "somewhere" / "else"
    (work / "data").mkdir(parents=True)
    proc, base = _start([sys.executable, "-m", "mock_server", "--port", "0", "--db", "data/mock.sqlite3"], work)
    try:
        with httpx.Client(timeout=30) as http:
            files = _export_files(http, base, PATIENT_GROUP)
    finally:
        _stop(proc)
    assert {"Patient", "Condition", "Encounter", "Observation"} <= set(files)
    assert (work / "data" / "mock.sqlite3").is_file()
    written = {p.stem for p in (work / "data" / "mock.sqlite3.exports").rglob("*.ndjson")}
    assert written == set(files)


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh virtual environment with the project's wheel installed; yields its bin directory.

    The wheel is built from a copy of the sources (the build leaves nothing in the repository)
    and installed without dependencies; the environment borrows the dependencies from the test
    environment's site-packages through a path file, which does not make the editable checkout
    importable (its finder is a .pth inside that directory, and .pth files there are not run)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in ("mock_server", "conformance"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(source)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(dist.glob("*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python*/site-packages"))
    deps = next(Path(p) for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    (site / "test-dependencies.pth").write_text(f"{deps}\n")
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                              "--no-deps", "--no-index", str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-2000:]
    yield venv / "bin"


@pytest.mark.slow
def test_installed_wheel_serves_the_fixtures_and_the_generated_population(installed_wheel: Path,
                                                                           tmp_path: Path) -> None:
    where = subprocess.run([str(installed_wheel / "python"), "-c", "import mock_server; print(mock_server.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(installed_wheel.parent)), f"mock_server imported from {where}, not the wheel"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc, base = _start([str(installed_wheel / "fhir-mock"), "--port", "0", "--db", "mock.sqlite3", "--patients", "30"],
                        tmp_path, env)
    try:
        with httpx.Client(timeout=30) as http:
            patients = http.get(f"{base}/Patient?_count=0", headers=TOKEN).json()["total"]
            groups = {e["resource"]["id"] for e in http.get(f"{base}/Group?_count=100", headers=TOKEN).json()["entry"]}
            files = _export_files(http, base, "population-20240602-30")
    finally:
        _stop(proc)
    assert patients == len(PATIENTS) + 30
    assert {g["id"] for g in GROUPS} <= groups and "population-20240602-30" in groups
    assert files["Patient"].count(b"\n") == 30


@pytest.mark.slow
def test_installed_wheel_ships_the_r4_schema(installed_wheel: Path, tmp_path: Path) -> None:
    code = ("import conformance.validation.schema as s, hashlib; from conformance.validation import validate; "
            "print(s.__file__); print(hashlib.sha256(s.schema_bytes()).hexdigest()); "
            "print([p.rule for p in validate({'resourceType': 'Group', 'type': 'bogus', 'actual': True})])")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([str(installed_wheel / "python"), "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    from conformance.validation.schema import SCHEMA_SHA256
    assert out[0].startswith(str(installed_wheel.parent)), out
    assert out[1] == SCHEMA_SHA256
    assert out[2] == "['schema enum: required binding or fixed code']"
