"""Images and videos through the ingest pipeline into the image, clip and video corpora.

Real parts throughout: the packaged CNN and OCR, whisper tiny.en, MiniLM, both
embedded engines; the video is made here with known scenes and speech at a known time.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from app.service import Service
from app.settings import Settings
from generation.llamacpp import LlamaCppGenerator
from ingest.base import FileStatus
from ingest.images.classify import visual_encoder_info
from ingest.images.decode import open_image
from ingest.images.describe import CnnImageAnalyzer
from ingest.media import CnnImageEncoder, MediaIngest
from ingest.pdfium import is_blank
from ingest.pipeline import Ingestor
from ingest.video.analyzer import PyAVVideoAnalyzer
from ingest.video.speech import SpeechRecognizer
from retrieval.base import Corpus, Store
from retrieval.edge_store import EdgeStore
from retrieval.encoders import SentenceTransformerEncoder
from retrieval.index import Index
from retrieval.select import SelectConfig, select_hits
from tests.helpers import (
    DURATION,
    QUAY,
    SPEECH_AT,
    encode,
    figure_pdf,
    needs_espeak,
    scanned_pdf,
    soundtrack,
    write_pdf,
)

COCO = Path(__file__).resolve().parents[2] / "shared" / "eval" / "images" / "coco" / "images"
ELEPHANTS = COCO / "000000054718.jpg"


@pytest.fixture(scope="module")
def analyzer() -> CnnImageAnalyzer:
    return CnnImageAnalyzer()


@pytest.fixture(scope="module")
def videos() -> PyAVVideoAnalyzer:
    return PyAVVideoAnalyzer(SpeechRecognizer())


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("media-in")
    sign = Image.new("RGB", (640, 240), "white")
    font = ImageFont.load_default(size=64)
    ImageDraw.Draw(sign).text((30, 80), "INVOICE 4711", fill="black", font=font)
    sign.save(root / "scan.png")
    if ELEPHANTS.is_file():
        shutil.copy(ELEPHANTS, root / "safari.jpg")
    encode(root / "meeting.mp4", audio=soundtrack(DURATION, SPEECH_AT))
    return root


@pytest.fixture()
def ingestor(
    store: Store,
    encoder: SentenceTransformerEncoder,
    analyzer: CnnImageAnalyzer,
    videos: PyAVVideoAnalyzer,
    tmp_path: Path,
) -> Ingestor:
    media = MediaIngest(
        tmp_path / "media", image_analyzer=lambda: analyzer, video_analyzer=lambda: videos
    )
    index = Index(store, encoder, visual=CnnImageEncoder(lambda: analyzer))
    return Ingestor(index, media=media)


def top(ingestor: Ingestor, query: str, corpus: Corpus, **kw: object) -> list[object]:
    hits = ingestor.index.search(query, [corpus], limit=3, **kw)[corpus]  # type: ignore[arg-type]
    return [h.item for h in hits]


def test_visual_encoder_info_matches_the_analyzer(analyzer: CnnImageAnalyzer) -> None:
    assert visual_encoder_info() == analyzer.info


@needs_espeak
def test_images_and_video_are_searchable(ingestor: Ingestor, folder: Path) -> None:
    report = ingestor.ingest([folder])
    assert report.ok, [f.message for f in report.files]
    counts = ingestor.index.counts()
    assert counts[Corpus.IMAGE] == (2 if ELEPHANTS.is_file() else 1)
    assert counts[Corpus.VIDEO] == 1 and counts[Corpus.CLIP] >= 3

    (scan,) = [i for i in top(ingestor, "invoice 4711", Corpus.IMAGE)[:1]]
    assert Path(scan.source).name == "scan.png"  # type: ignore[attr-defined]
    assert "4711" in scan.extra["ocr"]  # type: ignore[attr-defined]
    assert Path(scan.extra["thumbnail"]).is_file()  # type: ignore[attr-defined]

    if ELEPHANTS.is_file():
        (photo,) = top(ingestor, "a photo of an elephant", Corpus.IMAGE)[:1]
        assert Path(photo.source).name == "safari.jpg"  # type: ignore[attr-defined]
        # Search by image: the photo itself finds itself among the images.
        image = open_image(ELEPHANTS)
        (same,) = top(ingestor, "animals", Corpus.IMAGE, image=image)[:1]
        assert Path(same.source).name == "safari.jpg"  # type: ignore[attr-defined]

    (clip,) = top(ingestor, "when does the quarterly meeting start", Corpus.CLIP)[:1]
    assert clip.extra["t_start"] <= SPEECH_AT <= clip.extra["t_end"]  # type: ignore[attr-defined]
    assert "meeting" in clip.extra["transcript"]  # type: ignore[attr-defined]
    assert all(Path(k).is_file() for k in clip.extra["keyframes"])  # type: ignore[attr-defined]
    (video,) = top(ingestor, "quarterly meeting", Corpus.VIDEO)[:1]
    assert abs(video.extra["duration"] - DURATION) < 0.5  # type: ignore[attr-defined]
    assert clip.id in video.extra["clip_ids"]  # type: ignore[attr-defined]

    again = ingestor.ingest([folder])
    assert {f.status for f in again.files} == {FileStatus.UNCHANGED}
    assert again.embedded == 0


def test_bad_media_is_reported_and_nothing_is_lost(ingestor: Ingestor, tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.new("RGB", (64, 64), "red").save(good)
    ingestor.ingest([good])
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.mp4").write_bytes(b"")
    (bad / "lie.jpg").write_text("not an image", encoding="utf-8")
    jpeg = tmp_path / "full.jpg"
    Image.new("RGB", (256, 256), "blue").save(jpeg)
    (bad / "truncated.jpg").write_bytes(jpeg.read_bytes()[:300])
    report = ingestor.ingest([bad])
    failed = {Path(f.path).name: f.message for f in report.files if f.status is FileStatus.FAILED}
    assert set(failed) == {"empty.mp4", "lie.jpg", "truncated.jpg"}
    assert all(name in message for name, message in failed.items())
    assert ingestor.index.counts()[Corpus.IMAGE] == 1


@needs_espeak
def test_removing_a_source_deletes_its_thumbnails_but_never_the_file(
    ingestor: Ingestor, folder: Path, tmp_path: Path
) -> None:
    photo = tmp_path / "sign.png"
    shutil.copy(folder / "scan.png", photo)
    assert ingestor.ingest([photo]).ok
    (item,) = ingestor.index.store.items_of(Corpus.IMAGE, str(photo.resolve()))
    thumb = Path(item.extra["thumbnail"])
    assert thumb.is_file()
    assert ingestor.remove_source(str(photo.resolve()))
    assert not ingestor.index.store.items_of(Corpus.IMAGE, str(photo.resolve()))
    assert not thumb.exists() and photo.is_file()
    assert not ingestor.remove_source(str(photo.resolve()))  # nothing left to remove


def test_answer_cites_the_clip_at_its_time(
    tmp_path: Path,
    encoder: SentenceTransformerEncoder,
    analyzer: CnnImageAnalyzer,
    videos: PyAVVideoAnalyzer,
    llm: LlamaCppGenerator,
    folder: Path,
) -> None:
    settings = Settings(data_dir=tmp_path / "data", max_tokens=64, temperature=0.0)
    store = EdgeStore(tmp_path / "store")
    service = Service(
        settings,
        index=Index(store, encoder, visual=CnnImageEncoder(lambda: analyzer)),
        generator=llm,
    )
    service.__dict__["image_analyzer"] = analyzer
    service.__dict__["video_analyzer"] = videos
    assert service.ingest([folder / "meeting.mp4"]).ok
    done = service.answer("When does the quarterly meeting start, as said in the video?")
    cited = [c.source.hit.item for c in done.answer.citations]
    clips = [i for i in cited if i.corpus is Corpus.CLIP]
    assert clips, done.answer
    # The citation carries the clip's real times, and they cover when it was said.
    assert any(c.extra["t_start"] <= SPEECH_AT <= c.extra["t_end"] for c in clips)
    assert "meeting" in done.answer.text.lower()
    store.close()


def test_pdf_figures_become_images_with_their_page(ingestor: Ingestor, tmp_path: Path) -> None:
    path = figure_pdf(tmp_path / "report.pdf", "Quarterly report, first page.")
    report = ingestor.ingest([path])
    assert report.ok, report.files
    store = ingestor.index.store
    (figure_item,) = store.items_of(Corpus.IMAGE, str(path.resolve()))
    (document,) = store.items_of(Corpus.DOCUMENT, str(path.resolve()))
    assert figure_item.page == 2
    assert figure_item.parent_id == document.id
    assert "4711" in figure_item.extra["ocr"]
    (hit,) = top(ingestor, "invoice 4711", Corpus.IMAGE)[:1]
    assert hit.id == figure_item.id  # type: ignore[attr-defined]
    # A changed PDF replaces its figures too: one figure, of the new version.
    figure_pdf(path, "Quarterly report, revised.")
    again = ingestor.ingest([path])
    assert [f.status for f in again.files] == [FileStatus.UPDATED]
    (new_figure,) = store.items_of(Corpus.IMAGE, str(path.resolve()))
    assert new_figure.content_hash != figure_item.content_hash
    # ... and the old figure's thumbnail goes with it.
    assert Path(new_figure.extra["thumbnail"]).is_file()
    assert not Path(figure_item.extra["thumbnail"]).exists()


def test_a_scanned_pdf_is_read_by_ocr(ingestor: Ingestor, tmp_path: Path) -> None:
    path = scanned_pdf(tmp_path / "harbour.pdf", [[], QUAY])
    steps: list[float] = []
    report = ingestor.ingest([path], step=lambda _s, f: steps.append(f))
    (result,) = report.files
    assert result.status is FileStatus.ADDED, result
    assert "1 of 2 pages read by OCR" in " ".join(result.warnings)
    assert "1 of 2 pages had no text layer (1)" in " ".join(result.warnings)  # the blank one
    assert steps == [0.5, 1.0]  # one step per page read
    store = ingestor.index.store
    passages = store.items_of(Corpus.PARAGRAPH, str(path.resolve()))
    assert {p.page for p in passages} == {2}
    assert "212 metres" in " ".join(p.text for p in passages)
    (hit,) = top(ingestor, "How long is the Brattli quay?", Corpus.PARAGRAPH)[:1]
    assert hit.page == 2  # type: ignore[attr-defined]
    # The page read by OCR is the page itself, not a figure on it; the blank sheet's
    # image stays a picture (nothing was read from it).
    assert [i.page for i in store.items_of(Corpus.IMAGE, str(path.resolve()))] == [1]


def test_blank_sheets_are_told_from_pages_with_ink() -> None:
    sheet = Image.new("L", (1700, 2200), 255)
    assert is_blank(sheet)
    ImageDraw.Draw(sheet).text((150, 200), QUAY[0], fill=0, font=ImageFont.load_default(size=40))
    assert not is_blank(sheet)  # one line of type is enough to be worth reading


def test_a_scan_without_any_text_fails_clearly(
    ingestor: Ingestor, tmp_path: Path, encoder: SentenceTransformerEncoder
) -> None:
    kept = tmp_path / "kept.md"
    kept.write_text("# Kept\n\nThis note was stored before.\n", encoding="utf-8")
    assert ingestor.ingest([kept]).ok
    blank = scanned_pdf(tmp_path / "blank.pdf", [[], []])
    (result,) = ingestor.ingest([blank]).files
    assert result.status is FileStatus.FAILED
    assert "no text layer on any of its 2 pages and OCR found no text" in result.message
    assert ingestor.index.store.items_of(Corpus.PARAGRAPH, str(kept.resolve()))
    # Without the media stage (no OCR) the message says why.
    text_only = Ingestor(Index(EdgeStore(tmp_path / "text-only"), encoder))
    (result,) = text_only.ingest([scanned_pdf(tmp_path / "quay.pdf", [QUAY])]).files
    assert result.status is FileStatus.FAILED and "OCR is off" in result.message


def test_pictures_shown_by_a_web_page_are_images_with_its_words(
    ingestor: Ingestor, folder: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    (site / "img").mkdir(parents=True)
    shutil.copy(folder / "scan.png", site / "img" / "receipt copy.png")
    page = site / "page.html"
    page.write_text(
        "<html><body><h1>Expenses</h1><p>Our travel expenses for March.</p>"
        '<figure><img src="img/receipt%20copy.png" alt="Hotel receipt">'
        "<figcaption>Scanned by the front desk</figcaption></figure>"
        '<img src="https://example.com/logo.png" alt="logo">'
        '<img src="img/missing.png" alt="gone">'
        "</body></html>",
        encoding="utf-8",
    )
    report = ingestor.ingest([page])
    assert report.ok, report.files
    (result,) = report.files
    # What could not be read is said, and the page is stored all the same.
    assert any("remote" in w for w in result.warnings)
    assert any("missing.png" in w for w in result.warnings)
    store = ingestor.index.store
    (picture,) = store.items_of(Corpus.IMAGE, str(page.resolve()))
    (document,) = store.items_of(Corpus.DOCUMENT, str(page.resolve()))
    assert picture.parent_id == document.id
    assert picture.extra["file"] == str((site / "img" / "receipt copy.png").resolve())
    # The alt text and the figure caption are its words, with its OCR.
    assert "Hotel receipt" in picture.text and "front desk" in picture.text
    assert "4711" in picture.extra["ocr"]
    assert top(ingestor, "hotel receipt", Corpus.IMAGE)[0].id == picture.id  # type: ignore[attr-defined]


def test_video_progress_is_reported(ingestor: Ingestor, folder: Path) -> None:
    steps: list[tuple[str, float]] = []
    report = ingestor.ingest([folder / "meeting.mp4"], step=lambda p, f: steps.append((p, f)))
    assert report.ok
    fractions = [f for _, f in steps]
    assert len(fractions) > 2 and fractions == sorted(fractions) and fractions[-1] == 1.0
    assert {Path(p).name for p, _ in steps} == {"meeting.mp4"}


def test_documents_are_stored_before_media_work(
    ingestor: Ingestor, folder: Path, tmp_path: Path
) -> None:
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(folder / "meeting.mp4", mixed / "a-meeting.mp4")  # sorts first by name
    (mixed / "z-notes.md").write_text("# Notes\n\nThe budget review is on Friday.\n")
    seen: list[tuple[str, int]] = []

    def on_file(result: object) -> None:
        name = Path(result.path).name  # type: ignore[attr-defined]
        seen.append((name, ingestor.index.counts()[Corpus.PARAGRAPH]))

    report = ingestor.ingest([mixed], on_file)
    assert report.ok, [f.message for f in report.files]
    assert [name for name, _ in seen] == ["z-notes.md", "a-meeting.mp4"]
    # When the video was done, the notes were already searchable.
    assert dict(seen)["a-meeting.mp4"] >= 1


def test_documents_are_stored_before_a_scan_is_read(ingestor: Ingestor, tmp_path: Path) -> None:
    mixed = tmp_path / "scans"
    mixed.mkdir()
    scanned_pdf(mixed / "a-harbour.pdf", [QUAY])  # sorts first by name
    write_pdf(mixed / "b-typed.pdf", [["The Zorblax reactor was commissioned in 1987."]])
    (mixed / "z-notes.md").write_text("# Notes\n\nThe budget review is on Friday.\n")
    stored_when_ocr_began: list[int] = []

    def on_step(_source: str, _fraction: float) -> None:
        if not stored_when_ocr_began:
            stored_when_ocr_began.append(ingestor.index.counts()[Corpus.DOCUMENT])

    report = ingestor.ingest([mixed], step=on_step)
    assert report.ok, [f.message for f in report.files]
    names = [Path(f.path).name for f in report.files]
    assert names == ["b-typed.pdf", "z-notes.md", "a-harbour.pdf"]
    assert stored_when_ocr_began == [2]  # both other documents were already searchable
    (hit,) = top(ingestor, "How long is the Brattli quay?", Corpus.PARAGRAPH)[:1]
    assert Path(hit.source).name == "a-harbour.pdf"  # type: ignore[attr-defined]


@pytest.mark.skipif(not ELEPHANTS.is_file(), reason="the COCO photos are absent")
@needs_espeak
def test_a_question_with_a_photo_keeps_that_photo_as_evidence(
    ingestor: Ingestor, folder: Path
) -> None:
    assert ingestor.ingest([folder]).ok
    hits = ingestor.index.search(
        "what animals are these?", list(Corpus), limit=20, image=open_image(ELEPHANTS)
    )
    chosen = select_hits(hits, SelectConfig())
    # The words say little about the photo; its pixels find it, and it is kept.
    assert Path(chosen[0].item.source).name == "safari.jpg"
