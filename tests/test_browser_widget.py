"""The embeddable widget in a real browser, on a third-party site.

Playwright drives Debian's chromium against the real app (uvicorn, Qdrant Edge, MiniLM,
the packaged CNN and whisper, the 0.5B LLM through llama.cpp) holding a small real corpus:
a PDF, a photo and a video from ../shared/eval. The pages that embed the widget are served
from other origins than the app's, by a tiny static server, exactly as a customer's site
would: one on the server's allowlist, one not. Run with
``python -m pytest -m browser tests/test_browser_widget.py``; the last test takes a
screenshot (``scripts/screenshots.sh`` refreshes docs/img/widget.png).
"""

from __future__ import annotations

import http.server
import shutil
import threading
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.api import create_app
from app.service import Service
from app.settings import Settings
from generation.llamacpp import LlamaCppGenerator
from ingest.images.describe import CnnImageAnalyzer
from ingest.media import CnnImageEncoder
from ingest.video.analyzer import PyAVVideoAnalyzer
from ingest.video.speech import SpeechRecognizer
from retrieval.base import Corpus
from retrieval.edge_store import EdgeStore
from retrieval.encoders import SentenceTransformerEncoder
from retrieval.index import Index
from tests.helpers import screenshots_dir, serve_in_thread, write_pdf

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
EVAL = ROOT.parent / "shared" / "eval"
PANCAKE = EVAL / "video" / "files" / "flipping_a_pancake.mkv"
ROCKET = EVAL / "images" / "skimage" / "images" / "rocket.jpg"
KEY = "widget-test-key"
ANSWER_MS = 90_000  # a real LLM on two cores, queued behind other tests' requests
GREEN = "rgb(26, 127, 55)"  # data-color="#1a7f37"
RED = "rgb(255, 0, 0)"

# JS: the widget's shadow root (mode "open"; Playwright's locators pierce it by themselves).
SHADOW = "document.querySelector('mmrag-widget').shadowRoot"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass
class Recorder:
    """ASGI wrapper that notes what the server answered: (method, path, origin, status)."""

    app: Any
    seen: list[tuple[str, str, str, int]] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = dict(scope["headers"]).get(b"origin", b"").decode()

        async def noting(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.seen.append((scope["method"], scope["path"], origin, message["status"]))
            await send(message)

        await self.app(scope, receive, noting)


class Site:
    """A third-party web site on its own origin: static pages from memory."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        pages = self.pages

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages.get(self.path.split("?")[0])
                if body is None:
                    self.send_error(404)
                    return
                raw = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def shop_page(app: str, *, key: str = KEY, extra_css: str = "") -> str:
    """A customer's page embedding the widget from the app's origin."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Nordlys Energy - visitor centre</title>
<style>
  body {{ font-family: Georgia, serif; margin: 0; background: #f4f1ea; color: #222; }}
  header {{ background: #20343f; color: #fff; padding: 18px 32px; font-size: 22px; }}
  main {{ max-width: 640px; padding: 8px 32px; line-height: 1.6; }}
  {extra_css}
</style></head>
<body>
<header>Nordlys Energy · visitor centre</header>
<main>
  <h1>The Zorblax reactor</h1>
  <p>Tours of the control room run on Saturdays. Our café serves pancakes all day.</p>
  <p>Questions? Ask our assistant: it answers from our documents, photos and videos.</p>
</main>
<script src="{app}/widget.js" data-key="{key}" data-title="Ask Nordlys"
        data-color="#1a7f37" data-placeholder="Ask about the reactor, tours, videos…"
        async></script>
</body></html>"""


HOSTILE_CSS = """
  button { background: red; color: yellow; font-size: 30px; border: 4px dashed blue; }
  input { border: 5px solid red; font-family: monospace; }
  p { letter-spacing: 3px; }
  .bubble, .panel { display: none; }
"""

PLAIN_HOSTILE_PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><style>{HOSTILE_CSS}</style></head>
<body><p id="para">A paragraph of the host page.</p>
<button id="own" class="bubble" type="button">The page's own button</button>
<input id="field" type="text"></body></html>"""


# --- fixtures ----------------------------------------------------------------------------


@dataclass
class App:
    url: str
    service: Service
    recorder: Recorder
    allowed: Site
    refused: Site


@pytest.fixture(scope="module")
def app(
    tmp_path_factory: pytest.TempPathFactory,
    encoder: SentenceTransformerEncoder,
    llm: LlamaCppGenerator,
) -> Iterator[App]:
    """The real app on a free port, with two third-party sites: one allowed, one not."""
    if not (PANCAKE.is_file() and ROCKET.is_file()):
        pytest.skip("../shared/eval is absent")
    root = tmp_path_factory.mktemp("widget")
    docs = root / "docs"
    docs.mkdir()
    write_pdf(
        docs / "plant-history.pdf",
        [
            ["The Vellmar valley has mild winters and wet springs."],
            [
                "The Zorblax reactor was commissioned in 1987 in Tromso.",
                "It was built by the Nordlys Energy cooperative.",
            ],
        ],
    )
    shutil.copy(ROCKET, docs / "rocket.jpg")
    allowed, refused = Site(), Site()
    settings = Settings(
        data_dir=root / "data",
        max_tokens=64,
        temperature=0.0,
        cors_origins=[allowed.origin],
        api_keys=[KEY],
        # Thumbnails and media count as requests too; the limit itself is test_api's.
        rate_limit_per_minute=0,
    )
    analyzer = CnnImageAnalyzer()
    store = EdgeStore(root / "store")
    service = Service(
        settings,
        index=Index(store, encoder, visual=CnnImageEncoder(lambda: analyzer)),
        generator=llm,
    )
    service.__dict__["image_analyzer"] = analyzer
    # Short clips, so that the video has several and a cited one may start past 0 s.
    service.__dict__["video_analyzer"] = PyAVVideoAnalyzer(
        SpeechRecognizer(), min_clip=2.0, max_clip=4.0
    )
    report = service.ingest([docs, PANCAKE])
    assert report.ok, report
    counts = service.collections()
    assert all(counts[c] > 0 for c in (Corpus.PARAGRAPH, Corpus.IMAGE, Corpus.CLIP)), counts

    recorder = Recorder(create_app(service))
    try:
        with serve_in_thread(recorder, lifespan="off") as url:
            for site in (allowed, refused):
                site.pages["/"] = shop_page(url)
                site.pages["/styled"] = shop_page(url, extra_css=HOSTILE_CSS)
                site.pages["/plain"] = PLAIN_HOSTILE_PAGE
            yield App(url, service, recorder, allowed, refused)
    finally:
        allowed.close()
        refused.close()
        service.close()


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1100, "height": 760})
    context.set_default_timeout(30_000)
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    yield p
    context.close()
    assert not errors, errors  # the widget threw no uncaught exception


# --- helpers -------------------------------------------------------------------------


def open_widget(page: Any) -> Any:
    """Open the bubble; return the question box (which has the focus)."""
    from playwright.sync_api import expect

    bubble = page.get_by_role("button", name="Open chat: Ask Nordlys")
    bubble.click()
    box = page.get_by_role("textbox", name="Your question")
    expect(box).to_be_focused()
    return box


def ask(page: Any, question: str) -> Any:
    """Ask with Enter; return the finished answer's message element."""
    box = open_widget(page) if not page.locator("mmrag-widget .panel").is_visible() else None
    box = box or page.get_by_role("textbox", name="Your question")
    before = page.locator("mmrag-widget .bot").count()
    box.fill(question)
    box.press("Enter")
    bot = page.locator("mmrag-widget .bot").nth(before)
    bot.and_(page.locator(".done, .failed")).wait_for(timeout=ANSWER_MS)
    return bot


# --- the tests ---------------------------------------------------------------------------


def test_a_third_party_site_streams_an_answer_and_opens_the_video_at_its_time(
    app: App, page: Any
) -> None:
    page.goto(f"{app.allowed.origin}/")
    box = open_widget(page)
    # Record the answer text each time it changes while the answer is still streaming.
    page.evaluate(
        f"""() => {{
          const root = {SHADOW};
          window.__streamed = [];
          new MutationObserver(() => {{
            const bots = root.querySelectorAll('.bot');
            const bot = bots[bots.length - 1];
            if (bot && bot.getAttribute('aria-busy') === 'true') {{
              window.__streamed.push(bot.querySelector('.answer').textContent);
            }}
          }}).observe(root.querySelector('.log'),
                      {{subtree: true, childList: true, characterData: true}});
        }}"""
    )
    box.fill("What happens in the video when the pancake is flipped?")
    box.press("Enter")
    bot = page.locator("mmrag-widget .bot").last
    bot.and_(page.locator(".done, .failed")).wait_for(timeout=ANSWER_MS)
    assert bot.locator(".error").count() == 0, bot.inner_text()
    assert "Searched clip" in bot.locator(".meta").inner_text()

    answer = bot.locator(".answer").inner_text()
    assert len(answer) > 10, answer
    streamed = [s for s in page.evaluate("() => window.__streamed") if s]
    assert len(set(streamed)) >= 2, streamed  # the text grew piece by piece
    assert all(answer.startswith(s[:10]) for s in streamed[-1:]), (streamed, answer)

    # A citation in the text is a link to its source: the video, at the clip.
    cite = bot.locator(".answer a.cite").first
    n = cite.get_attribute("data-n")
    source = bot.locator(f".source[data-n='{n}']")
    assert source.get_attribute("data-corpus") == "clip"
    clips = app.service.store.items_of(Corpus.CLIP, str(PANCAKE))
    starts = sorted(float(c.extra["t_start"]) for c in clips)
    assert len(starts) >= 2, starts
    cite.click()
    video = page.locator("mmrag-widget .viewer video")
    video.wait_for()
    t_start = float(video.get_attribute("data-t-start") or "nan")
    assert t_start == float(source.get_attribute("data-t-start") or "nan")
    assert any(abs(t_start - s) < 0.01 for s in starts), (t_start, starts)
    at_start = (
        f"() => {{ const v = {SHADOW}.querySelector('.viewer video');"
        " return v && v.readyState >= 1 && !v.error && v.duration > 0"
        " && Math.abs(v.currentTime - parseFloat(v.dataset.tStart)) < 1; }"
    )
    page.wait_for_function(at_start, timeout=30_000)
    # The player streams the signed link (no blob: download of the whole file first).
    src = video.get_attribute("src") or ""
    assert src.startswith(f"{app.url}/api/v1/media?") and "&sig=" in src, src
    assert any(e[1] == "/api/v1/media" and e[3] == 206 for e in app.recorder.seen)

    # Escape closes the source and gives the focus back to the citation.
    page.keyboard.press("Escape")
    assert not video.is_visible()
    assert page.evaluate(f"() => {SHADOW}.activeElement.dataset.n") == n

    # The latest clip among the sources opens past 0 s, at its own start.
    latest = max(
        bot.locator(".source[data-corpus='clip']").all(),
        key=lambda s: float(s.get_attribute("data-t-start") or 0),
    )
    later = float(latest.get_attribute("data-t-start") or 0)
    assert later > 0 and any(abs(later - s) < 0.01 for s in starts), (later, starts)
    latest.click()
    page.wait_for_function(at_start, timeout=30_000)
    current = page.evaluate(f"() => {SHADOW}.querySelector('.viewer video').currentTime")
    assert abs(current - later) < 1, (current, later)

    # The question went to the app's origin, from the site's origin, and was answered.
    asked = [e for e in app.recorder.seen if e[:3] == ("POST", "/api/v1/ask", app.allowed.origin)]
    assert asked and asked[-1][3] == 200, asked


def test_an_image_citation_shows_the_picture(app: App, page: Any) -> None:
    page.goto(f"{app.allowed.origin}/")
    bot = ask(page, "Show me a picture of a rocket on a launchpad")
    assert bot.locator(".error").count() == 0, bot.inner_text()
    rocket = bot.locator(".source[data-corpus='image']").first
    assert "rocket" in rocket.inner_text()
    assert Path(rocket.get_attribute("title") or "").name == "rocket.jpg"
    rocket.click()
    picture = page.locator("mmrag-widget .viewer img")
    picture.wait_for()
    page.wait_for_function(
        f"() => {{ const i = {SHADOW}.querySelector('.viewer img');"
        " return i && i.complete && i.naturalWidth > 100; }"
    )
    # <img> cannot send the Authorization header: the server's signed link loads it.
    src = picture.get_attribute("src") or ""
    assert src.startswith(f"{app.url}/api/v1/media?") and "&sig=" in src, src


def test_a_site_off_the_allowlist_gets_a_readable_error(app: App, page: Any) -> None:
    page.goto(f"{app.refused.origin}/")
    bot = ask(page, "When was the Zorblax reactor commissioned?")
    error = bot.locator(".error")
    assert error.get_attribute("role") == "alert"
    message = error.inner_text()
    assert "does not accept questions from this site" in message, message
    assert app.refused.origin in message and "MMRAG_CORS_ORIGINS" in message
    # The server refused the browser (at the CORS preflight); the question never ran.
    refused = [e for e in app.recorder.seen if e[1:3] == ("/api/v1/ask", app.refused.origin)]
    assert refused and all(status == 403 for _, _, _, status in refused), refused
    assert not any(method == "POST" and status == 200 for method, *_, status in refused)
    # And the API itself answers that origin 403 origin_not_allowed.
    r = httpx.post(
        f"{app.url}/api/v1/ask",
        json={"question": "When was the Zorblax reactor commissioned?"},
        headers={"Origin": app.refused.origin, "Authorization": f"Bearer {KEY}"},
    )
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "origin_not_allowed"


def test_css_does_not_leak_into_or_out_of_the_widget(app: App, page: Any) -> None:
    page.goto(f"{app.allowed.origin}/plain")
    styles = """() => Object.fromEntries(['para', 'own', 'field'].map(id => {
        const s = getComputedStyle(document.getElementById(id));
        return [id, [s.backgroundColor, s.color, s.fontSize, s.borderTopWidth, s.display,
                     s.position, s.letterSpacing, s.fontFamily].join('|')];
    }))"""
    before = page.evaluate(styles)
    page.evaluate(
        """(app) => {
          const s = document.createElement('script');
          s.src = app + '/widget.js';
          Object.assign(s.dataset, {key: 'k', title: 'Ask Nordlys', color: '#1a7f37'});
          document.body.append(s);
        }""",
        app.url,
    )
    box = open_widget(page)
    assert page.evaluate(styles) == before  # the widget's styles stay in its shadow root

    def widget_style(selector: str, prop: str) -> str:
        value: str = page.evaluate(
            f"([sel, prop]) => getComputedStyle({SHADOW}.querySelector(sel))[prop]",
            [selector, prop],
        )
        return value

    assert widget_style(".bubble", "backgroundColor") == GREEN  # not the page's red
    assert widget_style(".send", "backgroundColor") == GREEN
    assert widget_style(".send", "fontSize") != "30px"
    assert widget_style(".send", "borderTopStyle") != "dashed"
    assert widget_style("input", "borderTopWidth") == "1px"
    assert "monospace" not in widget_style("input", "fontFamily")
    assert widget_style(".empty", "letterSpacing") in ("normal", "0px")
    assert box.is_visible()  # the page's `.panel {display: none}` does not hide ours
    assert page.locator("mmrag-widget .bubble").is_visible()


def test_the_demo_page_embeds_the_widget_and_explains_a_missing_key(app: App, page: Any) -> None:
    page.goto(f"{app.url}/demo")  # same origin as the API: no CORS needed
    page.get_by_role("button", name="Open chat: Ask our docs").click()
    box = page.get_by_role("textbox", name="Your question")
    assert box.get_attribute("placeholder") == "Ask about our documents…"
    # The demo's tag has no data-key, and this server requires one.
    box.fill("When was the Zorblax reactor commissioned?")
    box.press("Enter")
    error = page.locator("mmrag-widget .bot.failed .error")
    error.wait_for()
    assert "needs an API key (401" in error.inner_text()
    assert (
        page.evaluate("() => getComputedStyle(document.querySelector('p button')).backgroundColor")
        == RED
    )  # the demo's own hostile styles, kept to its own elements


def test_keyboard_only_and_phone_width(app: App, browser: Any) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(
        viewport={"width": 360, "height": 640}, is_mobile=True, reduced_motion="reduce"
    )
    try:
        page = context.new_page()
        page.goto(f"{app.allowed.origin}/styled")
        bubble = page.get_by_role("button", name="Open chat: Ask Nordlys")
        bubble.focus()
        page.keyboard.press("Enter")
        box = page.get_by_role("textbox", name="Your question")
        expect(box).to_be_focused()
        assert page.locator("mmrag-widget .bubble").get_attribute("aria-expanded") == "true"
        panel = page.get_by_role("dialog", name="Ask Nordlys")
        box_ = panel.bounding_box()
        assert box_ is not None
        # The whole screen is the panel (no animation: reduced motion).
        assert [round(box_[k]) for k in ("x", "y", "width", "height")] == [0, 0, 360, 640]
        assert box.is_visible() and page.get_by_role("button", name="Send").is_visible()
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 360
        close = page.get_by_role("button", name="Close chat", exact=True)
        assert close.is_visible()
        page.keyboard.press("Escape")
        expect(panel).to_be_hidden()
        expect(page.get_by_role("button", name="Open chat: Ask Nordlys")).to_be_focused()
    finally:
        context.close()


def test_screenshot_of_an_answer_that_cites_a_pdf_page(app: App, page: Any) -> None:
    page.goto(f"{app.allowed.origin}/")
    bot = ask(page, "When was the Zorblax reactor commissioned?")
    assert bot.locator(".error").count() == 0, bot.inner_text()
    assert "1987" in bot.locator(".answer").inner_text()
    cite = bot.locator(".answer a.cite").first
    # A second answer, from the video, shows its clips' keyframes in the picture too.
    video = ask(page, "What happens in the video when the pancake is flipped?")
    thumbs = video.locator(".source img")
    assert thumbs.count() >= 2
    page.wait_for_function(
        f"() => [...{SHADOW}.querySelectorAll('.source img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    page.screenshot(path=str(screenshots_dir() / "widget.png"))

    cite.scroll_into_view_if_needed()

    cite.click()
    page.wait_for_function(
        f"() => {{ const i = {SHADOW}.querySelector('.viewer img.page');"
        " return i && i.complete && i.naturalWidth > 500; }"
    )
    viewer = page.locator("mmrag-widget .viewer")
    assert "page 2" in viewer.inner_text()
    assert "Zorblax reactor was commissioned" in viewer.locator("blockquote").inner_text()
