"""Render a report in headless Chromium: a screenshot and the page geometry of named elements.

Geometry comes from the page itself: a small script measures the elements after layout
and writes the figures into the DOM, which ``--dump-dom`` prints.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

VIEWPORT = (1280, 800)
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
_MEASURE = """
<script>
addEventListener("load", function () {
  var out = {viewport: [innerWidth, innerHeight], scrollWidth: document.documentElement.scrollWidth, elements: {}};
  %s.forEach(function (sel) {
    var el = document.querySelector(sel);
    if (!el) { out.elements[sel] = null; return; }
    var r = el.getBoundingClientRect();
    out.elements[sel] = {top: r.top, bottom: r.bottom, left: r.left, right: r.right,
                         visible: getComputedStyle(el).visibility !== "hidden" && r.height > 0};
  });
  var pre = document.createElement("pre"); pre.id = "geometry"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def chromium() -> str | None:
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


def _run(binary: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}", *args],
                          capture_output=True, text=True, timeout=120)


def screenshot(binary: str, page: Path, png: Path) -> None:
    _run(binary, f"--screenshot={png}", page.as_uri())


def geometry(binary: str, page: Path, selectors: list[str], work: Path) -> dict:
    """Where each selector's first element lies in the first screen (CSS pixels)."""
    measured = work / f"measured-{page.stem}.html"
    text = page.read_text(encoding="utf-8")
    measured.write_text(text.replace("</body>", _MEASURE % json.dumps(selectors) + "</body>"), encoding="utf-8")
    proc = _run(binary, "--virtual-time-budget=5000", "--dump-dom", measured.as_uri())
    found = re.search(r'<pre id="geometry">(.*?)</pre>', proc.stdout, re.S)
    if not found:
        raise AssertionError(f"no geometry in the dumped DOM: {proc.stderr[-1000:]}")
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
