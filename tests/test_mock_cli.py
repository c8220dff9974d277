"""The fhir-mock command line: options, errors (exit 2), and serving with waitress."""
from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from mock_server.__main__ import main
from mock_server.deviations import DEVIATIONS


def test_list_deviations(capsys):
    assert main(["--list-deviations"]) == 0
    out = capsys.readouterr().out
    for d in DEVIATIONS.values():
        assert d.name in out and d.breaks[0] in out


@pytest.mark.parametrize(
    "argv",
    [["--deviate", "nope"], ["--port", "70000"], ["--port", "x"], ["--token", ":system/*.read"],
     ["--token", "t:bad-scope"], ["--client", "idonly"], ["--threads", "0"], ["--fixtures", "/no/such/dir"]],
)
def test_bad_options_exit_2(argv, capsys):
    assert main(argv) == 2
    assert capsys.readouterr().err


def test_python_m_serves_until_killed(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "mock_server", "--port", "0", "--db", str(tmp_path / "m.sqlite3"),
         "--token", "secret:system/Group.read", "--deviate", "quantity-always-zero"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("fhir-mock listening on http://127.0.0.1:")
        base = line.rsplit(" ", 1)[1]
        assert httpx.get(f"{base}/metadata").status_code == 200
        assert httpx.get(f"{base}/Group", headers={"Authorization": "Bearer secret"}).status_code == 200
        assert httpx.get(f"{base}/Group", headers={"Authorization": "Bearer dev-token"}).status_code == 401
        assert httpx.get(f"{base}/Patient", headers={"Authorization": "Bearer secret"}).status_code == 403
    finally:
        proc.terminate()
        proc.wait(10)


def test_export_min_seconds_option_is_parsed_and_refuses_nonsense():
    from mock_server.__main__ import build_parser

    assert build_parser().parse_args(["--export-min-seconds", "0.05"]).export_min_seconds == 0.05
    for bad in ("-1", "nan", "soon", "inf"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--export-min-seconds", bad])


def test_a_db_in_a_directory_not_made_yet_is_created(tmp_path, monkeypatch):
    """`fhir-mock --db data/mock.sqlite3` in a fresh directory: data/ is made (it was a traceback)."""
    from mock_server import db
    from mock_server.config import MockConfig

    monkeypatch.chdir(tmp_path)
    store = db.Store(MockConfig(db="data/mock.sqlite3").db)
    try:
        assert (tmp_path / "data" / "mock.sqlite3").is_file()
    finally:
        store.close()


def test_a_db_that_cannot_be_opened_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "adir").mkdir()
    assert main(["--port", "0", "--db", str(tmp_path / "adir")]) == 2
    err = capsys.readouterr().err
    assert "fhir-mock: error: cannot open the database" in err and "Traceback" not in err
