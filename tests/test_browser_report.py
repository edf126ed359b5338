"""``mmrag eval all``'s page in a real browser: Debian's chromium, driven by Playwright,
opens the written index.html from disk and every plot on it loads. Marked ``browser``:
``python -m pytest -m browser``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from evals.plots import PLOTS
from evals.report import PAGE_FILE
from tests.test_report import report_folder

pytestmark = pytest.mark.browser


def test_every_image_of_the_report_page_loads(tmp_path: Path, browser: Any) -> None:
    out = report_folder(tmp_path / "report")
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto((out / PAGE_FILE).as_uri())
    page.wait_for_load_state("load")
    images = page.evaluate(
        "() => Array.from(document.images, i => ({src: i.getAttribute('src'),"
        " complete: i.complete, width: i.naturalWidth, height: i.naturalHeight}))"
    )
    assert sorted(i["src"] for i in images) == sorted(p.file for p in PLOTS)
    assert all(i["complete"] and i["width"] > 0 and i["height"] > 0 for i in images), images
    # the markup in the failed step's error stayed text: no script ran, no element made
    assert errors == []
    shown = page.locator("section#eval-text p.failed").inner_text()
    assert shown.startswith("Failed: ValueError: <script>alert('x')</script>")
    assert page.locator("section#eval-text script").count() == 0
    page.close()
