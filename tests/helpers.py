"""Helpers the test modules share: files to ingest, services, servers, media.

Test modules import these from here, never from each other, so a test module can be
renamed or deleted without breaking another. Fixtures stay in conftest.py. Importing
this module loads no model: anything heavy is imported inside the helper that needs it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from app.service import Service
from app.settings import Settings
from generation import Source
from ingest.base import FileStatus, IngestReport
from ingest.images.describe import CnnImageAnalyzer
from ingest.media import CnnImageEncoder
from ingest.pipeline import Ingestor
from retrieval.base import Corpus, Hit, Item
from retrieval.edge_store import EdgeStore
from retrieval.encoders import SentenceTransformerEncoder
from retrieval.index import Index

# --- servers ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def serve_in_thread(asgi_app: Any, lifespan: str = "auto") -> Iterator[str]:
    """Serve ``asgi_app`` with uvicorn on a free 127.0.0.1 port; yield its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(asgi_app, log_level="warning", lifespan=lifespan))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:  # waiting for the server to listen, not timing anything
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def screenshots_dir() -> Path:
    """Where browser tests write screenshots: a temporary folder, so running the tests
    never changes the checkout; ``scripts/screenshots.sh`` points it at docs/img/."""
    import tempfile

    folder = Path(
        os.environ.get("MMRAG_SCREENSHOTS") or Path(tempfile.gettempdir()) / "mmrag-shots"
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# --- documents ----------------------------------------------------------------------------


def write_pdf(path: Path, pages: list[list[str]], *, title: str | None = None) -> Path:
    """A PDF with one drawn line per string; an empty list makes a page without text."""
    from reportlab.lib.pagesizes import letter
    from reportlab.pdfgen import canvas

    pdf = canvas.Canvas(str(path), pagesize=letter)
    if title is not None:
        pdf.setTitle(title)
    for lines in pages:
        if not lines:
            pdf.rect(72, 72, 200, 200)  # something drawn, but no text
        for i, line in enumerate(lines):
            pdf.drawString(72, 720 - 14 * i, line)
        pdf.showPage()
    pdf.save()
    return path


def figure_pdf(path: Path, first_line: str) -> Path:
    """A two-page PDF: a logo too small to count on page 1, a text figure on page 2."""
    from reportlab.lib.pagesizes import letter
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    figure = Image.new("RGB", (640, 240), "white")
    ImageDraw.Draw(figure).text(
        (30, 80), "INVOICE 4711", fill="black", font=ImageFont.load_default(size=64)
    )
    logo = Image.new("RGB", (40, 40), "red")
    pdf = canvas.Canvas(str(path), pagesize=letter)
    pdf.drawString(72, 720, first_line)
    pdf.drawImage(ImageReader(logo), 72, 600, 40, 40)
    pdf.showPage()
    pdf.drawString(72, 720, "The scanned invoice is shown below.")
    pdf.drawImage(ImageReader(figure), 72, 400, 320, 120)
    pdf.showPage()
    pdf.save()
    return path


QUAY = [
    "Harbour Authority of Vardholm",
    "The Brattli quay was rebuilt in 2011 and is now",
    "212 metres long. Ships up to 9 metres draught can",
    "berth there at any tide.",
]


def scanned_pdf(path: Path, pages: list[list[str]]) -> Path:
    """A PDF of page images only (no text layer), as a scanner writes it: 200 dpi, a
    slight skew; a page without lines is a blank sheet."""
    sheets = []
    font = ImageFont.load_default(size=40)
    for lines in pages:
        sheet = Image.new("L", (1700, 2200), 255)
        draw = ImageDraw.Draw(sheet)
        for n, line in enumerate(lines):
            draw.text((150, 200 + 70 * n), line, fill=0, font=font)
        sheets.append(sheet.rotate(0.7, fillcolor=255))
    sheets[0].save(path, resolution=200, save_all=True, append_images=sheets[1:])
    return path


# --- a folder to ingest -------------------------------------------------------------------


LONG = " ".join(f"Sentence {i} explains how the hydraulic pump keeps pressure." for i in range(60))


def make_folder(root: Path) -> Path:
    docs = root / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "guide.md").write_text(
        "# Pump guide\n\n## Maintenance\n\nReplace the gasket kit XQ-7731-B every spring.\n\n"
        f"## Theory\n\n{LONG}\n",
        encoding="utf-8",
    )
    (docs / "sub" / "notes.txt").write_text(
        "Cats sleep for most of the day.\n\nThey hunt at dusk.", encoding="utf-8"
    )
    write_pdf(
        docs / "report.pdf",
        [["Revenue grew four percent in 2023."], ["The board approved a dividend of 12 cents."]],
    )
    from docx import Document

    d = Document()
    d.add_heading("Travel policy", 1)
    d.add_paragraph("Employees book flights through the internal portal.")
    d.save(str(docs / "policy.docx"))
    (docs / ".hidden.txt").write_text("never ingested", encoding="utf-8")
    return docs


def by_name(report: IngestReport) -> dict[str, FileStatus]:
    return {Path(f.path).name: f.status for f in report.files}


def search_sources(ingestor: Ingestor, query: str, corpus: Corpus = Corpus.PARAGRAPH) -> list[str]:
    hits = ingestor.index.search(query, [corpus], limit=5)[corpus]
    return [Path(h.item.source).name for h in hits]


# --- generation sources -------------------------------------------------------------------


def make_source(
    number: int,
    text: str = "Some text.",
    *,
    source: str = "/data/docs/report.pdf",
    page: int | None = 3,
    heading: tuple[str, ...] = (),
) -> Source:
    item = Item(
        id=f"item-{number}",
        corpus=Corpus.PARAGRAPH,
        text=text,
        source=source,
        content_hash="0" * 64,
        page=page,
        heading=heading,
    )
    return Source(number, Hit(item, score=1.0 / number))


ZORBLAX_SOURCES = [
    make_source(
        1,
        "The Hardanger Bridge is a suspension bridge across the Eidfjorden in Vestland, "
        "Norway. It opened in 2013 and has a main span of 1,310 metres.",
        source="/data/bridges.pdf",
        page=4,
        heading=("Bridges", "Norway"),
    ),
    make_source(
        2,
        "The Zorblax reactor was commissioned in 1987 in Tromsø. It was built to supply "
        "district heating to the university campus and was shut down in 2009.",
        source="/data/energy-history.pdf",
        page=12,
        heading=("Energy", "Northern Norway"),
    ),
    make_source(
        3,
        "Tromsø has a subarctic climate. The polar night lasts from late November to "
        "mid-January, and the midnight sun is visible from May to July.",
        source="/data/tromso-guide.md",
        page=None,
        heading=("Climate",),
    ),
]


# --- a service ----------------------------------------------------------------------------


# The Host the test client sends: a loopback name, as the server's default allowlist wants.
LOCAL = "http://127.0.0.1"


def make_service(
    root: Path,
    encoder: SentenceTransformerEncoder,
    generator: Any,
    analyzer: CnnImageAnalyzer,
    **settings: Any,
) -> Service:
    s = Settings(**{"data_dir": root / "data", "max_tokens": 48, "temperature": 0.0, **settings})
    store = EdgeStore(root / "store")
    service = Service(
        s,
        index=Index(store, encoder, visual=CnnImageEncoder(lambda: analyzer)),
        generator=generator,
    )
    service.__dict__["image_analyzer"] = analyzer
    return service


# --- videos with known content at known times (tests/test_video.py) -----------------------
# Three scenes cut at CUTS (red, blue with a white box, green), a small square moving all
# the time, and an audio track silent but for SENTENCE spoken by espeak-ng at SPEECH_AT.


SENTENCE = "the quarterly meeting starts at nine"
SPEECH_AT = 15.0
CUTS = (12.3, 26.7)  # off the 0.5 s sampling grid: cuts must be located exactly
DURATION = 40.0
FPS = 10
AUDIO_RATE = 22_050

ESPEAK = shutil.which("espeak-ng")
needs_espeak = pytest.mark.skipif(
    ESPEAK is None, reason="espeak-ng is not installed (apt-get install espeak-ng): no speech"
)


def scene_colour(t: float) -> tuple[int, int, int]:
    if t < CUTS[0]:
        return (210, 30, 30)
    if t < CUTS[1]:
        return (30, 40, 210)
    return (30, 190, 60)


def draw_frame(t: float, width: int = 160, height: int = 120) -> np.ndarray:
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[:] = scene_colour(t)
    if CUTS[0] <= t < CUTS[1]:
        img[30:90, 50:110] = 255  # the blue scene's shape
    x = int(t * 7) % (width - 12)
    img[5:17, x : x + 12] = (240, 220, 0)  # motion inside every scene
    return img


def speech_samples() -> np.ndarray:
    """The sentence as float32 mono at AUDIO_RATE, spoken by espeak-ng."""
    assert ESPEAK is not None
    out = subprocess.run(
        [ESPEAK, "--stdout", "-s", "140", SENTENCE], check=True, capture_output=True
    ).stdout
    import io

    with wave.open(io.BytesIO(out)) as w:
        rate, raw = w.getframerate(), w.readframes(w.getnframes())
    samples = np.frombuffer(raw, dtype=np.int16).astype(np.float32) / 32768.0
    if rate != AUDIO_RATE:
        positions = np.arange(0, len(samples), rate / AUDIO_RATE)
        samples = np.interp(positions, np.arange(len(samples)), samples).astype(np.float32)
    return samples


def soundtrack(duration: float, speech_at: float | None) -> np.ndarray:
    rng = np.random.default_rng(7)
    audio = rng.normal(0, 0.002, int(duration * AUDIO_RATE)).astype(np.float32)
    if speech_at is not None and ESPEAK is not None:
        voice = speech_samples()
        start = int(speech_at * AUDIO_RATE)
        audio[start : start + len(voice)] += voice * 0.8
    return audio


def encode(
    path: Path,
    *,
    video: bool = True,
    audio: np.ndarray | None = None,
    duration: float = DURATION,
    gop: int | None = None,
) -> Path:
    """Write an MP4/MKV with the scene video and/or the given mono audio."""
    with av.open(str(path), "w") as out:
        vstream = astream = None
        if video:
            vstream = out.add_stream("libx264", rate=FPS)
            vstream.width, vstream.height, vstream.pix_fmt = 160, 120, "yuv420p"
            vstream.options = {"preset": "ultrafast"}
            if gop is not None:
                vstream.codec_context.gop_size = gop
        if audio is not None:
            astream = out.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        if vstream is not None:
            for i in range(int(duration * FPS)):
                frame = av.VideoFrame.from_ndarray(draw_frame(i / FPS), format="rgb24")
                frame.pts = i
                out.mux(vstream.encode(frame))
            out.mux(vstream.encode(None))
        if astream is not None and audio is not None:
            for start in range(0, len(audio), 1024):
                chunk = audio[start : start + 1024]
                frame = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
                frame.sample_rate, frame.pts = AUDIO_RATE, start
                frame.time_base = Fraction(1, AUDIO_RATE)
                out.mux(astream.encode(frame))
            out.mux(astream.encode(None))
    return path
