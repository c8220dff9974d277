"""Group $export on the mock: 10,000- and 100,000-patient groups (not run by CI).

    .venv/bin/python benchmarks/bench_export.py                 # 10000 and 100000
    .venv/bin/python benchmarks/bench_export.py --sizes 10000 --no-suite

For each size: start ``fhir-mock --patients N`` (file database), then
- export the generated group (GET kick-off, poll, download every file): seconds,
  resources per second, and the mock's peak RSS during the export (VmHWM after
  resetting it with /proc/<pid>/clear_refs once the population is loaded);
- run the suite's bulk-export profile against that group (FHIR_CONFORMANCE_EXPORT_GROUP)
  and time it.
Figures are printed, never asserted.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/fhir+json", "Prefer": "respond-async"}


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


def start_mock(tmp: Path, patients: int) -> tuple[subprocess.Popen, str, float]:
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "mock_server", "--port", "0", "--db", str(tmp / "mock.sqlite3"),
                             "--token", TOKEN, "--patients", str(patients)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if "listening on" in line:
            return proc, line.strip().rsplit(" ", 1)[-1], time.perf_counter() - started
    raise RuntimeError(f"fhir-mock did not start (exit {proc.wait()})")


def export(base: str, gid: str) -> tuple[float, float, int, int]:
    """(seconds to manifest, seconds incl. downloads, resources, bytes)."""
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
        time.sleep(min(float(r.headers.get("Retry-After", "1")), 0.2))
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


def suite(base: str, gid: str, tmp: Path) -> tuple[float, int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_CONFORMANCE_")}
    env.update(FHIR_CONFORMANCE_TOKEN=TOKEN, FHIR_CONFORMANCE_EXPORT_GROUP=gid, FHIR_CONFORMANCE_EXPORT_TIMEOUT="1800")
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "conformance.cli", "run", "--target", base, "--profile", "bulk-export",
                           "--report-dir", str(tmp / "reports"), "--seed", "1"], cwd=tmp, env=env,
                          capture_output=True, text=True)
    verdict = next((l for l in proc.stdout.splitlines() if l.startswith("verdict:")), proc.stdout[-300:])
    return time.perf_counter() - started, proc.returncode, verdict


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--no-suite", action="store_true", help="skip timing the suite's export checks")
    args = parser.parse_args()
    print(f"{'patients':>9} {'load s':>8} {'export s':>9} {'+download s':>12} {'resources':>10} {'res/s':>9} "
          f"{'MB':>7} {'mock peak RSS MB':>17} {'suite s':>8}  suite verdict", flush=True)
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix="bench-export-") as tmpdir:
            tmp = Path(tmpdir)
            proc, base, load = start_mock(tmp, n)
            try:
                gid = f"population-20240602-{n}"
                reset = _reset_peak(proc.pid)
                ready, total, resources, size = export(base, gid)
                peak = _rss(proc.pid, "VmHWM" if reset else "VmRSS")
                suite_s, code, verdict = (0.0, 0, "skipped") if args.no_suite else suite(base, gid, tmp)
            finally:
                proc.terminate()
                proc.wait(10)
            print(f"{n:>9} {load:>8.1f} {ready:>9.1f} {total:>12.1f} {resources:>10} {resources / ready:>9.0f} "
                  f"{size / 1e6:>7.1f} {peak / 1e6:>17.1f} {suite_s:>8.1f}  {verdict}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
