"""pdfium has one owner, ``ingest/pdfium.py``, and one lock.

pdfium is not thread-safe, and in a server two kinds of work reach it at once: an
ingest (text, figures, scanned pages rendered for OCR) and the page images the REST API
renders for people. Here real FinanceBench filings are ingested in one thread while the
API renders the pages of another filing through the real app, and both must come out
as they do alone: every render the same PNG as a quiet one, every file ingested with
the passages a quiet load gives. No sleeps: the ingest stops at each moment it reports
(a file stored, a scanned page judged) until a page has been rendered, and another
render follows while it goes on, so renders meet every kind of pdfium work: text,
figures, and a scanned PDF held open between its pages.
"""

from __future__ import annotations

import io
import queue
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.api import create_app
from app.service import Service
from ingest.base import FileStatus, IngestReport
from ingest.chunking import chunk
from ingest.images.describe import CnnImageAnalyzer
from ingest.pdf import PdfLoader
from ingest.pdfium import render_png
from retrieval.base import Corpus
from retrieval.encoders import SentenceTransformerEncoder
from tests.helpers import LOCAL, make_service, write_pdf

ROOT = Path(__file__).resolve().parent.parent
FINANCEBENCH = ROOT.parent / "shared" / "eval" / "documents" / "financebench" / "pdfs"
SHOWN = "MGMRESORTS_2022Q4_EARNINGS.pdf"  # 15 pages, rendered through the API
# Ingested meanwhile, in this order (the prefixes): a short one first, whose result
# starts the renders; then one with a figure and two scanned pages, and one with a figure.
INGESTED = (
    "1-FOOTLOCKER_2022_8K_dated-2022-05-20.pdf",
    "2-BESTBUY_2019_10K.pdf",
    "3-AMCOR_2023Q4_EARNINGS.pdf",
)
PACKAGES = ("app", "generation", "ingest", "retrieval", "router")
MAX_PAGE_PIXELS = 1_000_000
WAIT_S = 600  # a bound on each rendezvous, only so that a broken run fails, not hangs

needs_filings = pytest.mark.skipif(
    not FINANCEBENCH.is_dir(), reason="the FinanceBench PDFs (../shared/eval) are not here"
)


def test_only_ingest_pdfium_imports_pypdfium2() -> None:
    """Its lock only protects pdfium if every use goes through the module that holds it."""
    importing = re.compile(r"^\s*(?:import|from)\s+pypdfium2\b", re.MULTILINE)
    users = sorted(
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if importing.search(path.read_text(encoding="utf-8"))
    )
    assert users == ["ingest/pdfium.py"]


@pytest.fixture(scope="module")
def analyzer() -> CnnImageAnalyzer:
    return CnnImageAnalyzer()


@pytest.fixture()
def service(
    tmp_path: Path, encoder: SentenceTransformerEncoder, analyzer: CnnImageAnalyzer
) -> Iterator[Service]:
    # No generator: nothing here is answered. Each file is stored as soon as it is read
    # (batch of 1), so the first result comes while the other files are still to do.
    svc = make_service(
        tmp_path,
        encoder,
        None,
        analyzer,
        ingest_batch_size=1,
        max_page_pixels=MAX_PAGE_PIXELS,
        page_renders_per_minute=0,
        rate_limit_per_minute=0,
    )
    yield svc
    svc.close()


@pytest.fixture()
def client(service: Service) -> Iterator[TestClient]:
    with TestClient(create_app(service), base_url=LOCAL) as c:
        yield c


def page_png(client: TestClient, pdf: Path, page: int) -> bytes:
    response = client.get("/api/v1/page", params={"path": str(pdf), "page": page})
    assert response.status_code == 200, response.text
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "PNG"
    image.load()  # decodes every row: a truncated or corrupt PNG raises here
    return response.content


@needs_filings
def test_pages_render_while_pdfs_are_ingested(
    tmp_path: Path, service: Service, client: TestClient
) -> None:
    shown_dir, ingested = tmp_path / "shown", tmp_path / "ingested"
    shown_dir.mkdir()
    ingested.mkdir()
    shown = Path(shutil.copy(FINANCEBENCH / SHOWN, shown_dir))
    for name in INGESTED:
        shutil.copy(FINANCEBENCH / name.split("-", 1)[1], ingested / name)
    assert service.ingest([shown_dir]).ok  # the API renders sources of the index only
    pages = service.store.items_of(Corpus.DOCUMENT, str(shown.resolve()))[0].extra["pages"]

    # The ingest stops at each moment it reports (a file stored, a scanned page read)
    # until a page has been rendered; a second render follows while it goes on.
    moments: queue.Queue[str | None] = queue.Queue()
    answers: queue.Queue[bool] = queue.Queue()
    aborted = threading.Event()
    outcome: list[IngestReport | BaseException] = []

    def pause(moment: str) -> None:
        if not aborted.is_set():
            moments.put(moment)
            answers.get(timeout=WAIT_S)

    def ingest() -> None:
        try:
            report = service.ingest(
                [ingested],
                progress=lambda r: pause(f"{Path(r.path).name} stored"),
                step=lambda source, done: pause(f"{Path(source).name} {done:.0%} read"),
            )
            outcome.append(report)
        except BaseException as e:
            outcome.append(e)
        finally:
            moments.put(None)

    thread = threading.Thread(target=ingest, name="ingest")
    thread.start()
    seen: list[str] = []
    renders: list[tuple[int, bytes]] = []
    try:
        while (moment := moments.get(timeout=WAIT_S)) is not None:
            seen.append(moment)
            for answer in (True, False):  # the ingest waits for the first render only
                page = len(renders) % pages + 1
                renders.append((page, page_png(client, shown, page)))
                if answer:
                    answers.put(True)
    finally:
        aborted.set()
        answers.put(True)  # frees an ingest still waiting if a render failed
        thread.join(WAIT_S)
    assert not thread.is_alive()

    (report,) = outcome
    assert isinstance(report, IngestReport), report
    assert report.ok, [f.message for f in report.files]
    # Three phases: documents, then the scanned PDF (two blank scanned pages, judged on
    # greyscale renders with the PDF held open), and every file stored once.
    assert seen == [
        "1-FOOTLOCKER_2022_8K_dated-2022-05-20.pdf stored",
        "3-AMCOR_2023Q4_EARNINGS.pdf stored",
        "2-BESTBUY_2019_10K.pdf 50% read",
        "2-BESTBUY_2019_10K.pdf 100% read",
        "2-BESTBUY_2019_10K.pdf stored",
    ]
    assert all(f.status is FileStatus.ADDED for f in report.files)
    # The renders made beside the ingest are the ones a quiet process makes.
    assert len(renders) == 2 * len(seen)
    for page, png in renders:
        assert png == render_png(shown, page, max_pixels=MAX_PAGE_PIXELS), page
    # So is what the ingest read: each filing's text, figures and blank scanned pages.
    s = service.settings
    by_name = {Path(f.path).name: f for f in report.files}
    for name in INGESTED:
        doc = PdfLoader().load(ingested / name)
        quiet = chunk(doc, target_words=s.chunk_target_words, max_words=s.chunk_max_words)
        assert by_name[name].passages == len(quiet), name
    assert by_name["2-BESTBUY_2019_10K.pdf"].warnings == (
        "2 of 107 pages had no text layer (21, 100)",
    )
    amcor = str((ingested / "3-AMCOR_2023Q4_EARNINGS.pdf").resolve())
    assert len(service.store.items_of(Corpus.IMAGE, amcor)) == 1


def test_page_errors_name_the_page_and_the_file(
    tmp_path: Path, service: Service, client: TestClient
) -> None:
    (tmp_path / "docs").mkdir()
    pdf = write_pdf(tmp_path / "docs" / "plant.pdf", [["The pump."], ["The valve."]])
    assert service.ingest([pdf.parent]).ok

    def error(page: int) -> tuple[int, str, str]:
        response = client.get("/api/v1/page", params={"path": str(pdf), "page": page})
        body = response.json()["error"]
        return response.status_code, body["code"], body["message"]

    assert error(3) == (404, "not_found", "plant.pdf has 2 pages, not 3")
    pdf.write_bytes(b"%PDF-1.7\nnot a PDF any more")  # changed on disk after ingest
    assert error(1) == (422, "unreadable", "plant.pdf is not a readable PDF")
