"""The HTML report renders in headless Chromium and the screenshot shows its charts."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from PIL import Image

from docfactory.core.db import make_engine
from docfactory.governance.audit import AuditLog
from docfactory.measurement.feedback import FeedbackStore
from docfactory.measurement.report import build_report, render_html
from docfactory.measurement.usage import Period, load_usage
from tests.measurement.test_usage_report import END, START, populate

QUALITY = {
    "source": "eval.json",
    "modified": "2025-03-16T10:00:00+00:00",
    "dataset": "piaf",
    "evaluated_queries": 200,
    "modes": [
        {"mode": "bm25", "recall@5": 0.71, "ndcg@10": 0.60, "mrr@10": 0.55},
        {"mode": "dense", "recall@5": 0.78, "ndcg@10": 0.66, "mrr@10": 0.61},
        {"mode": "hybrid", "recall@5": 0.83, "ndcg@10": 0.70, "mrr@10": 0.66},
    ],
}


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium absent (Debian: apt-get install -y chromium)")


def screenshot(html: Path, png: Path, height: int = 2000) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--screenshot={png}",
                f"--window-size=1280,{height}",
                html.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )


def colours(img: Image.Image) -> int:
    small = img.convert("RGB").resize((640, img.height * 640 // img.width))
    return len(set(small.getdata()))


def test_html_report_renders_with_its_charts(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    populate(engine)
    data = load_usage(AuditLog(engine), FeedbackStore(engine), Period(START, END))
    engine.dispose()
    html = render_html(build_report(data, quality=QUALITY))
    page = tmp_path / "report.html"
    page.write_text(html, encoding="utf-8")

    # every chart is a real, non-blank picture
    charts = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(charts) == 6
    for b64 in charts:
        img = Image.open(io.BytesIO(base64.b64decode(b64)))
        assert img.width > 400 and colours(img) > 30

    png = tmp_path / "report.png"
    screenshot(page, png)
    assert png.exists() and png.stat().st_size > 100_000
    shot = Image.open(png).convert("RGB")
    assert shot.size == (1280, 2000)
    assert colours(shot) > 500  # charts, not a blank or text-only page
    # the first chart (usage over time) sits in the upper part of the page: its bars' blue
    top = shot.crop((0, 0, 1280, 1400))
    blues = sum(1 for r, g, b in top.getdata() if (r, g, b) == (46, 134, 193))
    assert blues > 2000
