"""Issue 18: the HTML report in a real browser. Headless Chromium (Debian ``chromium``) lays the
page out; the test reads back the sizes of the chart, its bars, points and labels and of the
tables, and checks a screenshot's size and colours. Skips, saying why, where Chromium is absent
(``.ci/run`` installs it)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import zlib
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from cds_service.report import INFO_FILL, LINE, WARNING_FILL, build_report, render_html
from cds_service.store import Store, upgrade

from .store_calls import synthetic_weeks

WINDOW = (1200, 1600)
TABLES = ("by-study", "by-indicator", "override-reasons", "weekly", "verdicts")


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("Chromium is not installed (Debian package 'chromium'); .ci/run installs it")
    return found


def run_chromium(binary: str, *args: str, timeout: float = 120.0) -> str:
    """One headless Chromium run with a fresh profile; its whole process group is gone after."""
    with tempfile.TemporaryDirectory(prefix="cds-chromium-") as profile:
        command = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            *args,
        ]
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: renderer and helpers included
        )
        try:
            out, err = process.communicate(timeout=timeout)
        finally:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # any helper left behind
            except ProcessLookupError:
                pass
            if process.returncode is None:
                process.wait()
        assert process.returncode == 0, err.decode(errors="replace")[-2000:]
        return out.decode()


MEASURE = """<script>
(() => {
  const box = (el) => { const r = el.getBoundingClientRect(); return [r.width, r.height]; };
  const chart = document.getElementById("weekly-chart");
  const week = /^(\\d\\d-\\d\\d|\\d{4}-W\\d\\d)$/;
  const labels = [...chart.querySelectorAll("text")].filter(t => week.test(t.textContent))
    .map(t => { const r = t.getBoundingClientRect(); return [r.left, r.right, r.top]; });
  const out = {
    chart: box(chart),
    bars: [...chart.querySelectorAll("rect.bar")].map(box),
    points: [...chart.querySelectorAll("circle.rate")].map(box),
    labels: labels,
    tables: Object.fromEntries(__TABLES__.map(id => {
      const t = document.getElementById(id);
      return [id, t ? {size: box(t), rows: t.querySelectorAll("tbody tr").length} : null];
    })),
    totals: box(document.getElementById("totals")),
    pageWidth: document.documentElement.scrollWidth,
  };
  const pre = document.createElement("pre");
  pre.id = "measured";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>""".replace("__TABLES__", json.dumps(list(TABLES)))


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, Path]]:
    """The HTML report of one week and of fifty-two, from audit rows in a real SQLite store."""
    folder = tmp_path_factory.mktemp("reports")
    pages = {}
    for weeks, start in ((1, date(2026, 11, 23)), (52, date(2025, 12, 1))):
        url = f"sqlite:///{folder / f'{weeks}.sqlite3'}"
        upgrade(url)
        store = Store(url, b"test-key")
        try:
            synthetic_weeks(store, weeks, start)
            page = folder / f"report-{weeks}.html"
            page.write_text(render_html(build_report(store)), encoding="utf-8")
        finally:
            store.close()
        pages[weeks] = page
    yield pages


def measure(chromium: str, page: Path) -> dict[str, Any]:
    probe = page.with_name(page.stem + "-probe.html")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", MEASURE + "</body>"))
    dom = run_chromium(chromium, "--dump-dom", probe.as_uri())
    start = dom.index('<pre id="measured">') + len('<pre id="measured">')
    measured: dict[str, Any] = json.loads(dom[start : dom.index("</pre>", start)])
    return measured


@pytest.mark.parametrize("weeks", [1, 52])
def test_chart_and_tables_are_laid_out_and_sized(
    chromium: str, reports: dict[int, Path], weeks: int
) -> None:
    m = measure(chromium, reports[weeks])
    width, height = m["chart"]
    assert width >= 600 and height >= 200, m["chart"]
    assert m["pageWidth"] <= WINDOW[0]  # nothing wider than the window
    bars_expected = 1 if weeks == 1 else 52 + 26
    assert len(m["bars"]) == bars_expected
    assert all(w >= 4 and h >= 4 for w, h in m["bars"]), "every bar is visible"
    assert len(m["points"]) == weeks and all(w >= 5 for w, _ in m["points"]), "rate points"
    # Week labels: present, and none overlaps its neighbour (52 weeks thin them).
    labels = sorted(m["labels"])
    assert 1 <= len(labels) <= 14
    assert all(a[1] <= b[0] for a, b in zip(labels, labels[1:], strict=False))
    for table in TABLES:
        found = m["tables"][table]
        assert found is not None, table
        assert found["size"][0] >= 300 and found["size"][1] >= 40, (table, found)
    assert m["tables"]["weekly"]["rows"] == weeks
    assert m["tables"]["override-reasons"]["rows"] == 1
    assert m["totals"][1] >= 60


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and rows of an 8-bit RGB or RGBA PNG without interlacing (what Chromium
    writes), unfiltered."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, idat, header = 8, b"", b""
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        chunk = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            header = chunk
        elif kind == b"IDAT":
            idat += chunk
        position += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            left = line[x - channels] if x >= channels else 0
            up = previous[x]
            corner = previous[x - channels] if x >= channels else 0
            if kind == 1:
                line[x] = (line[x] + left) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + up) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[x] = (line[x] + pred) & 0xFF
        rows.append(bytes(line[i] for i in range(stride) if i % channels < 3))
        previous = line
    return width, height, rows


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def test_screenshot_shows_the_chart_in_its_colours(
    chromium: str, reports: dict[int, Path], tmp_path: Path
) -> None:
    shot = tmp_path / "report-52.png"
    run_chromium(chromium, f"--screenshot={shot}", reports[52].as_uri())
    width, height, rows = png_pixels(shot.read_bytes())
    assert (width, height) == WINDOW
    counts = {}
    for name, colour in (("warning", WARNING_FILL), ("info", INFO_FILL), ("line", LINE)):
        target = _rgb(colour)
        counts[name] = sum(
            1
            for row in rows
            for x in range(0, len(row), 3)
            if all(abs(row[x + i] - target[i]) <= 8 for i in range(3))
        )
    # The bars and the override line are drawn (thousands of pixels each), not a blank box.
    assert counts["warning"] > 5000 and counts["info"] > 1000 and counts["line"] > 1000, counts
