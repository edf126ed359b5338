"""The web UI in a real browser: Playwright driving Debian's chromium against
the real app (uvicorn, embedded Qdrant, the packaged models, the 0.5B LLM) serving real
material from ../shared/eval. Marked ``browser``: ``python -m pytest -m browser``.

The widget's browser tests are in tests/test_browser_widget.py. The screenshot goes to
a temporary folder (``scripts/screenshots.sh`` refreshes docs/img/ui.png, shown in
the README).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.api import create_app
from app.service import Service
from app.ui import mount_ui as with_ui
from generation.llamacpp import LlamaCppGenerator
from ingest.images.describe import CnnImageAnalyzer
from ingest.video.analyzer import PyAVVideoAnalyzer
from ingest.video.speech import SpeechRecognizer
from retrieval.encoders import SentenceTransformerEncoder
from tests.helpers import make_service, screenshots_dir, serve_in_thread, write_pdf

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
EVAL = ROOT.parent / "shared" / "eval"
PANCAKE = EVAL / "video" / "files" / "flipping_a_pancake.mkv"
ROCKET = EVAL / "images" / "skimage" / "images" / "rocket.jpg"


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
    encoder: SentenceTransformerEncoder,
    llm: LlamaCppGenerator,
) -> Iterator[tuple[str, Service, Path]]:
    if not (PANCAKE.is_file() and ROCKET.is_file()):
        pytest.skip("../shared/eval is absent")
    root = tmp_path_factory.mktemp("browser")
    docs = root / "docs"
    docs.mkdir()
    write_pdf(
        docs / "plant.pdf",
        [["Intro page."], ["The Zorblax reactor was commissioned in 1987 in Tromsø."]],
    )
    shutil.copy(ROCKET, docs / "rocket.jpg")
    shutil.copy(PANCAKE, docs / "pancake.mkv")
    service: Service = make_service(
        root,
        encoder,
        llm,
        CnnImageAnalyzer(),
        max_tokens=64,
    )
    service.__dict__["video_analyzer"] = PyAVVideoAnalyzer(SpeechRecognizer())
    assert service.ingest([docs]).ok
    with serve_in_thread(with_ui(create_app(service), service)) as url:
        yield url, service, docs
    service.close()


@pytest.fixture(scope="module")
def app_url(served: tuple[str, Service, Path]) -> str:
    return served[0]


def test_the_ui_streams_an_answer_with_a_source_thumbnail(app_url: str, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(f"{app_url}/ui/")
    box = page.locator("#question textarea")
    box.wait_for(timeout=60_000)
    box.fill("Show me a picture of a rocket on a launchpad")
    box.press("Enter")
    thumb = page.locator("#sources img").first
    thumb.wait_for(timeout=120_000)
    assert "rocket.jpg" in page.locator("#sources").inner_text()
    page.wait_for_function(
        "() => (document.querySelector('#route') || {innerText: ''}).innerText.includes('image')",
        timeout=60_000,
    )
    bot = page.locator("#chat .bot, #chat [data-testid='bot']").last
    bot.wait_for(timeout=60_000)
    page.screenshot(path=str(screenshots_dir() / "ui.png"), full_page=True)
    page.close()


def test_the_ui_fits_a_phone(app_url: str, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(f"{app_url}/ui/")
    from playwright.sync_api import expect

    page.locator("#question textarea").wait_for(timeout=60_000)
    # Gradio renders the row's components one after the other: wait for the button too.
    expect(page.locator("#send")).to_be_visible(timeout=30_000)
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390 + 2
    page.close()


def test_the_corpora_tab_lists_counts_and_sources(app_url: str, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(f"{app_url}/ui/")
    page.get_by_role("tab", name="Corpora").click()
    sources = page.locator("#sources-list")
    page.wait_for_function(
        "() => (document.querySelector('#sources-list') || {innerText: ''})"
        ".innerText.includes('rocket.jpg')",
        timeout=60_000,
    )
    text = sources.inner_text()
    assert "plant.pdf" in text and "pancake.mkv" in text
    assert "paragraph" in page.locator("#corpora").inner_text()
    page.close()
