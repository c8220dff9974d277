"""Group $export on the mock, the previous algorithm against this one, in one run (not run by CI).

    .venv/bin/python benchmarks/bench_export.py                       # 10000 and 100000 patients
    .venv/bin/python benchmarks/bench_export.py --sizes 10000 --suite # also time the suite's export checks

For each size, one database is loaded once (``fhir-mock --patients N``, file database), then
for each algorithm a fresh ``fhir-mock`` process on that database exports the generated
group: kick-off, poll, download every file. Measured from the kick-off to the last byte:
resources per second and MB per second, and the process's peak RSS during the export
(VmHWM after resetting it with /proc/<pid>/clear_refs once the mock is up).

"previous" is the export writer as it was before issue 12 (every stored row parsed with
``json.loads``, reshaped, its instant reformatted in Python and encoded again with
``json.dumps``), kept callable here as ``PreviousExporter``; "current" is the shipped
one (rows outside the window skipped in SQL, stored JSON text streamed as is, Patient
``meta.lastUpdated`` set by SQLite's ``json_set``). Figures are printed, never asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TOKEN = "bench-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/fhir+json", "Prefer": "respond-async"}
ALGORITHMS = ("previous", "current")


def previous_exporter():  # type: ignore[no-untyped-def]
    """The export writer before issue 12, verbatim, as a subclass of the shipped Exporter."""
    from mock_server.bulk import exporter as jobs
    from mock_server.deviations import deviates

    class PreviousExporter(jobs.Exporter):
        def _write_rows(self, writer: jobs.Writer, patient_ids: list[str], practitioner_ids: list[str],
                        first: bool) -> None:
            wrong_type = "Observation" if deviates("export-wrong-line-type") else None
            with self.database.read() as conn:
                for rtype, ids in (("Patient", patient_ids), ("Practitioner", practitioner_ids)):
                    if not ids or not self.wanted(rtype):
                        continue
                    marks = ",".join("?" * len(ids))
                    for rid, last_updated, body in conn.execute(
                            f"SELECT id, last_updated, body FROM resource WHERE rtype = ? AND id IN ({marks}) ORDER BY seq",
                            [rtype, *ids]):
                        if self.in_window(last_updated):
                            writer.write(rtype, self.shape(json.loads(body), rtype, rid, last_updated), wrong_type)
                if not patient_ids:
                    return
                marks = ",".join("?" * len(patient_ids))
                for rtype, rid, last_updated, body in conn.execute(
                        f"SELECT rtype, id, last_updated, body FROM compartment_resource WHERE patient_id IN ({marks})"
                        " ORDER BY rtype, seq", patient_ids):
                    if self.wanted(rtype) and self.in_window(last_updated):
                        resource = self.shape(json.loads(body), rtype, rid, last_updated)
                        if first and deviates("export-foreign-compartment"):
                            resource["subject"] = {"reference": "Patient/not-a-member"}
                            first = False
                        writer.write(rtype, resource)
                if self.wanted("Task"):
                    self._write_tasks(conn, writer, patient_ids)

    return PreviousExporter


def serve(algorithm: str, argv: list[str]) -> int:
    """Run fhir-mock in this process with the chosen export algorithm."""
    from mock_server import __main__ as cli
    from mock_server.bulk import exporter as jobs

    if algorithm == "previous":
        jobs.Exporter = previous_exporter()
    return cli.main(argv)


def _rss(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _reset_peak(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def start_mock(db: Path, patients: int, algorithm: str) -> tuple[subprocess.Popen, str, float]:
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", algorithm, "--", "--port", "0", "--db", str(db),
                             "--token", TOKEN, "--patients", str(patients)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if "listening on" in line:
            url = line.strip().rsplit(" ", 1)[-1]
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the pipe drained
            return proc, url, time.perf_counter() - started
    raise RuntimeError(f"fhir-mock did not start (exit {proc.wait()})")


def export(base: str, gid: str) -> tuple[float, float, int, int]:
    """(seconds to manifest, seconds kick-off to last byte, resources, bytes)."""
    http = httpx.Client(timeout=600)
    started = time.perf_counter()
    r = http.get(f"{base}/Group/{gid}/$export", headers=HEADERS)
    assert r.status_code == 202, r.text
    status = r.headers["Content-Location"]
    while True:
        r = http.get(status, headers=HEADERS)
        if r.status_code == 200:
            break
        assert r.status_code == 202, r.text
        time.sleep(0.05)
    ready = time.perf_counter() - started
    lines = size = 0
    for entry in r.json()["output"]:
        with http.stream("GET", entry["url"], headers={"Authorization": f"Bearer {TOKEN}"}) as f:
            for chunk in f.iter_bytes():
                lines += chunk.count(b"\n")
                size += len(chunk)
    total = time.perf_counter() - started
    http.delete(status, headers=HEADERS)
    return ready, total, lines, size


def suite(base: str, gid: str, tmp: Path) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_CONFORMANCE_")}
    env.update(FHIR_CONFORMANCE_TOKEN=TOKEN, FHIR_CONFORMANCE_EXPORT_GROUP=gid, FHIR_CONFORMANCE_EXPORT_TIMEOUT="1800")
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "conformance.cli", "run", "--target", base, "--profile", "bulk-export",
                           "--report-dir", str(tmp / "reports"), "--seed", "1"], cwd=tmp, env=env,
                          capture_output=True, text=True)
    verdict = next((l for l in proc.stdout.splitlines() if l.startswith("verdict:")), proc.stdout[-300:])
    return time.perf_counter() - started, verdict


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--suite", action="store_true", help="also time the suite's bulk-export checks (current only)")
    parser.add_argument("--serve", choices=ALGORITHMS, help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.serve:
        return serve(args.serve, [a for a in rest if a != "--"])
    print(f"{'patients':>9} {'algorithm':>9} {'resources':>10} {'MB':>7} {'to manifest s':>13} {'to last byte s':>14} "
          f"{'res/s':>9} {'MB/s':>7} {'peak RSS MB':>11}", flush=True)
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix="bench-export-") as tmpdir:
            tmp = Path(tmpdir)
            db = tmp / "mock.sqlite3"
            gid = f"population-20240602-{n}"
            figures = {}
            for algorithm in ALGORITHMS:
                proc, base, load = start_mock(db, n, algorithm)
                try:
                    reset = _reset_peak(proc.pid)
                    ready, total, resources, size = export(base, gid)
                    peak = _rss(proc.pid, "VmHWM" if reset else "VmRSS")
                    verdict = suite(base, gid, tmp) if args.suite and algorithm == "current" else None
                finally:
                    proc.terminate()
                    proc.wait(10)
                figures[algorithm] = (resources / total, size / 1e6 / total)
                print(f"{n:>9} {algorithm:>9} {resources:>10} {size / 1e6:>7.1f} {ready:>13.2f} {total:>14.2f} "
                      f"{resources / total:>9.0f} {size / 1e6 / total:>7.1f} {peak / 1e6:>11.1f}"
                      + (f"  suite {verdict[0]:.0f} s, {verdict[1]}" if verdict else ""), flush=True)
            (prev_res, prev_mb), (cur_res, cur_mb) = figures["previous"], figures["current"]
            print(f"{n:>9} {'speed-up':>9} {'':>10} {'':>7} {'':>13} {'':>14} {cur_res / prev_res:>8.1f}x "
                  f"{cur_mb / prev_mb:>6.1f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
