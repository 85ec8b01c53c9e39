"""The HTML report of a real run in a real headless browser (Debian's chromium): it loads from disk without
errors, its DOM holds the leaderboard rows and the figures, and a screenshot is a real, non-blank page.

Skipped only when no chromium binary is found (CI: `apt-get install -y chromium`)."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg
from typer.testing import CliRunner

from scldbench.cli import app

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER = os.environ.get("SCLDBENCH_CHROMIUM") or next((p for p in map(shutil.which, CANDIDATES) if p), None)
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="no chromium binary found (install it with `apt-get install -y chromium`)"
)

SUITE = """
name = "browser-test"
dataset = "pbmc68k-mini"
seeds = 1
generators = ["positive", "nb", "random"]
[evaluate]
n_trees = 50
min_cluster_cells = 20
extra_metrics = false
"""
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0"]
# lines chromium writes in containers whatever the page does (no D-Bus, no GPU); anything else at ERROR
# level, or a console message from the page, counts as a failure
HARMLESS = re.compile(r"dbus|D-Bus|Fontconfig|gpu|GPU|gles|GLES|viz|angle|sandbox|crashpad|GCM|Vulkan|va_?api|"
                      r"ozone|x11|X11|AudioContext|pulse|alsa|cert_verify|ssl_client|UpdateClient|allocator",
                      re.IGNORECASE)


def chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    command = [BROWSER, *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def page_errors(stderr: str) -> list[str]:
    """Console messages of the page (there should be none: the page has no scripts) and unexpected errors."""
    lines = stderr.splitlines()
    console = [line for line in lines if ":CONSOLE" in line or "Uncaught" in line]
    return console + [line for line in lines if ":ERROR:" in line and not HARMLESS.search(line)]


def test_error_detection_catches_a_broken_page(tmp_path: Path) -> None:
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><p>x</p><script>undefinedFunction();</script></body></html>")
    done = chromium(["--dump-dom", bad.as_uri()], tmp_path / "profile")
    assert any("undefinedFunction" in line for line in page_errors(done.stderr))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run, a guidance sweep added to one record (no fast generator has guidance), then its HTML."""
    root = tmp_path_factory.mktemp("browser")
    suite = root / "suite.toml"
    suite.write_text(SUITE)
    run = root / "run"
    runner = CliRunner()
    result = runner.invoke(app, ["run", str(suite), "--out", str(run)])
    assert result.exit_code == 0, result.output
    job = next((run / "jobs").glob("nb-*.json"))
    record = json.loads(job.read_text())
    record["guidance_sweep"] = [{"cluster": c, "guidance": w, "n": 50, "on_target": 0.3 + 0.2 * w + 0.1 * i}
                                for i, c in enumerate(["0", "1"]) for w in (-1.0, 0.0, 1.0)]
    job.write_text(json.dumps(record))
    result = runner.invoke(app, ["report", str(run), "--format", "html"])
    assert result.exit_code == 0, result.output
    path = run / "report.html"
    assert result.output.strip() == str(path)
    return path


def test_html_is_self_contained(report: Path) -> None:
    text = report.read_text()
    assert "<script" not in text.lower()
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:|#)""", text), "external resource referenced"
    assert "http://" not in text and "https://" not in text


def test_dom_has_tables_and_figures(report: Path, tmp_path: Path) -> None:
    done = chromium(["--dump-dom", report.as_uri()], tmp_path / "profile")
    assert done.returncode == 0, done.stderr[-2000:]
    assert page_errors(done.stderr) == []
    dom = done.stdout
    board = re.search(r'<table class="leaderboard">(.*?)</table>', dom, re.S)
    assert board, "no leaderboard table in the DOM"
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", board.group(1), re.S)
    assert len(rows) == 4  # header and three generators
    names = [re.sub(r"<[^>]+>", "", re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)[0]) for r in rows[1:]]
    assert names == ["positive (control)", "nb", "random (control)"]
    assert "★" not in board.group(1)  # nb is the only non-control: with nothing to beat, nothing is marked
    assert '<table class="jobs">' in dom and "scgan-v1" in dom and "pbmc68k-mini" in dom
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', dom)
    assert {alt for alt, _ in images} == {"Per-cluster scores", "Guidance sweep", "Real vs generated cells",
                                          "Training time"}
    for alt, data in images:
        png = base64.b64decode(data)
        assert png.startswith(b"\x89PNG") and len(png) > 5_000, alt
        pixels = mpimg.imread(io.BytesIO(png), format="png")
        assert pixels.shape[0] > 150 and pixels.shape[1] > 300, alt


def test_screenshot_is_a_real_page(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    done = chromium([f"--screenshot={shot}", "--window-size=1400,3000", report.as_uri()], tmp_path / "profile")
    assert done.returncode == 0, done.stderr[-2000:]
    assert page_errors(done.stderr) == []
    assert shot.is_file() and shot.stat().st_size > 50_000
    pixels = mpimg.imread(shot)
    assert pixels.shape[:2] == (3000, 1400)
    rgb = pixels[..., :3].reshape(-1, 3)
    assert rgb.std() > 0.05  # not a blank single-colour page
    colours = np.unique((rgb[::7] * 255).astype(np.uint8), axis=0)
    assert len(colours) > 200  # text, tables and plots, not a flat fill
    non_white = np.mean(rgb.min(axis=1) < 0.9)
    assert non_white > 0.03
