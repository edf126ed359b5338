"""What one file may cost: the ingest limits and the hostile files of issue 10.

Each limit refuses with a ``LimitError`` that names the file, the limit and the setting
that raises it; a hostile file ingested beside good ones costs seconds, and loses
nothing already stored. The costs behind the limits (a giant line, runs of blanks,
thousands of empty pages) are checked in a child process, where a hang is a timeout
and memory is the child's own peak.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from app.service import Service
from app.settings import Settings
from ingest.base import FileStatus
from ingest.docx import DocxLoader, check_unpacked_size
from ingest.html import HtmlLoader
from ingest.markdown import MarkdownLoader
from ingest.media import MediaIngest
from ingest.pdf import PdfLoader
from ingest.pipeline import Ingestor
from ingest.text import TextLoader
from retrieval.base import Corpus, Store
from retrieval.encoders import SentenceTransformerEncoder
from retrieval.errors import LimitError
from retrieval.index import Index
from tests.helpers import by_name, make_folder, search_sources, write_pdf

ROOT = Path(__file__).resolve().parent.parent
# Generous: each case below takes well under a second; the old code took minutes.
HANG_S = 60.0


def docx_bomb(path: Path, xml_mb: float = 40) -> Path:
    """A real DOCX (python-docx) whose document.xml is ``xml_mb`` MB of paragraphs: a few
    hundred KB on disk, like the 291 KB file that unpacked to 100 MB."""
    from docx import Document

    buffer = io.BytesIO()
    Document().save(buffer)
    paragraph = b"<w:p><w:r><w:t>Revenue grew in every region again.</w:t></w:r></w:p>"
    body = b"<w:body>" + paragraph * int(xml_mb * 1_000_000 / len(paragraph))
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(path, "w") as out:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "word/document.xml":
                data = data.replace(b"<w:body>", body, 1)
            out.writestr(info, data, zipfile.ZIP_DEFLATED, 9)
    return path


def blank_pdf(path: Path, pages: int) -> Path:
    """A PDF of ``pages`` empty Letter pages (no text layer, nothing drawn)."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument.new()
    for _ in range(pages):
        pdf.new_page(612, 792).close()
    pdf.save(str(path))
    pdf.close()
    return path


def one_line(path: Path, chars: int) -> Path:
    """``chars`` characters of words on one line: no newline, no sentence end."""
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa "
    path.write_text((words * (chars // len(words) + 1))[:chars], encoding="utf-8")
    return path


def in_child(code: str, timeout: float = HANG_S) -> dict[str, float]:
    """Run ``code`` in a fresh interpreter; its JSON result plus its peak RSS in MB.

    A hang fails the test at ``timeout`` instead of stalling the suite."""
    # VmHWM is the peak of this process's own memory; ru_maxrss would carry the peak of
    # the parent it was forked from (pytest, with models loaded) across the exec.
    script = textwrap.dedent(code) + textwrap.dedent(
        """
        import json
        hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
        result["peak_mb"] = int(hwm.split()[1]) / 1024
        print(json.dumps(result))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def baseline_mb() -> float:
    """The peak of a child that imports what the measured ones use, and does nothing."""
    code = """
        from ingest.chunking import chunk
        from ingest.text import TextLoader
        from retrieval.sparse import BM25Encoder
        BM25Encoder().encode(["a few words"])
        result = {}
        """
    return in_child(code)["peak_mb"]


# --- each limit, with its message ---------------------------------------------------------


def test_a_docx_bomb_is_refused_from_its_zip_directory(tmp_path: Path) -> None:
    bomb = docx_bomb(tmp_path / "bomb.docx")
    assert bomb.stat().st_size < 1_000_000
    with pytest.raises(LimitError) as err:
        DocxLoader().load(bomb)
    message = str(err.value)
    assert message.startswith(f"{bomb}: its XML unpacks to 38.")
    assert message.endswith(
        " MB, over the limit of 32.0 MB of XML, an eighth of the unpacked limit "
        "(raise MMRAG_INGEST_MAX_UNPACKED_MB to ingest it)"
    )
    # Raised, the unpacked limit lets it through to the character limit, which stops
    # the expansion as soon as the text passes it.
    with pytest.raises(LimitError, match=r"bomb\.docx: its text runs past the limit of 1,000,000"):
        DocxLoader(max_unpacked_bytes=512 * 2**20, max_chars=1_000_000).load(bomb)


def test_the_unpacked_limit_counts_every_entry(tmp_path: Path) -> None:
    from docx import Document

    path = tmp_path / "photos.docx"
    d = Document()
    d.add_paragraph("A report with a large attachment.")
    d.save(str(path))
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("word/media/big.bin", b"\0" * 3_000_000, zipfile.ZIP_DEFLATED)
    with pytest.raises(
        LimitError, match=r"photos\.docx: unpacks to 3\.\d MB, over the limit of 2\.0 MB"
    ):
        check_unpacked_size(path, path.read_bytes(), 2 * 2**20)
    check_unpacked_size(path, path.read_bytes(), 8 * 2**20)  # within: no error
    check_unpacked_size(path, b"not a zip at all", 1)  # left to the format's parser


def test_a_pdf_over_the_page_limit_is_refused_before_its_pages_are_read(tmp_path: Path) -> None:
    path = blank_pdf(tmp_path / "blank.pdf", 2_500)
    with pytest.raises(LimitError) as err:
        PdfLoader().load(path)
    assert str(err.value) == (
        f"{path}: 2,500 pages, over the limit of 2,000 pages "
        "(raise MMRAG_INGEST_MAX_PAGES to ingest it)"
    )
    assert PdfLoader(max_pages=3_000).load(path).untexted_pages[-1] == 2_500


def test_characters_over_the_limit_are_refused_in_every_format(tmp_path: Path) -> None:
    text = one_line(tmp_path / "oneline.txt", 20_000_001)
    with pytest.raises(LimitError) as err:
        TextLoader().load(text)
    assert str(err.value) == (
        f"{text}: 20,000,001 characters of text, over the limit of 20,000,000 characters per "
        "file (raise MMRAG_INGEST_MAX_CHARS to ingest it)"
    )
    html = tmp_path / "page.html"
    html.write_text("<p>" + "word " * 50 + "</p>" * 1)
    with pytest.raises(LimitError, match=r"page\.html: .*MMRAG_INGEST_MAX_CHARS"):
        HtmlLoader(max_chars=100).load(html)
    pdf = write_pdf(tmp_path / "long.pdf", [["A line of some forty characters or so."]] * 4)
    with pytest.raises(LimitError, match=r"long\.pdf: \d+ characters of text, over the limit"):
        PdfLoader(max_chars=100).load(pdf)
    from docx import Document

    d = Document()
    for _ in range(50):
        d.add_paragraph("Every paragraph adds to the text of the file.")
    d.save(str(tmp_path / "long.docx"))
    with pytest.raises(LimitError, match=r"long\.docx: its text runs past the limit of 100 char"):
        DocxLoader(max_chars=100).load(tmp_path / "long.docx")


def test_markup_whose_parse_tree_would_not_fit_is_refused(tmp_path: Path) -> None:
    """Tiny blocks and tags cost ~1 KB each parsed: 2 MB of list items took a GB."""
    md = tmp_path / "list.md"
    md.write_text("- a\n" * 1_001)
    with pytest.raises(LimitError) as err:
        MarkdownLoader(max_chars=50_000).load(md)
    assert str(err.value) == (
        f"{md}: 1,001 lines of Markdown, over the limit of 1,000 that follows from the "
        "character limit (raise MMRAG_INGEST_MAX_CHARS to ingest it)"
    )
    assert MarkdownLoader(max_chars=60_000).load(md).sections
    html = tmp_path / "tags.html"
    html.write_text("<b>x</b>" * 1_000)
    with pytest.raises(
        LimitError, match=r"tags\.html: 2,000 tags of HTML, over the limit of 1,000"
    ):
        HtmlLoader(max_chars=40_000).load(html)


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_pages"):
        PdfLoader(max_pages=0)
    with pytest.raises(ValueError, match="max_chars"):
        TextLoader(max_chars=0)


def test_settings_reach_the_loaders_and_the_ocr(
    store: Store, encoder: SentenceTransformerEncoder, tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        ingest_max_pages=3,
        ingest_max_chars=5_000,
        ingest_max_unpacked_mb=1,
        ingest_max_text_mb=2,
        ingest_max_page_pixels=1000 * 1000,
    )
    ingestor = Service(settings, index=Index(store, encoder)).ingestor
    pdf, docx, md = (ingestor.loaders[s] for s in (".pdf", ".docx", ".md"))
    assert isinstance(pdf, PdfLoader) and (pdf.max_pages, pdf.max_chars) == (3, 5_000)
    assert isinstance(docx, DocxLoader) and docx.max_unpacked_bytes == 2**20
    assert isinstance(md, MarkdownLoader) and md.max_bytes == 2 * 2**20
    assert ingestor.media is not None and ingestor.media.max_page_pixels == 1_000_000
    four = write_pdf(tmp_path / "four.pdf", [["Page text."]] * 4)
    (result,) = ingestor.ingest([four]).files
    assert result.status is FileStatus.FAILED
    assert result.message == (
        f"{four}: 4 pages, over the limit of 3 pages (raise MMRAG_INGEST_MAX_PAGES to ingest it)"
    )


# --- the three observed files, beside good ones, on a real store ------------------------


@pytest.fixture()
def ingestor(store: Store, encoder: SentenceTransformerEncoder) -> Ingestor:
    return Ingestor(Index(store, encoder), batch_size=8)


def test_hostile_files_fail_clearly_and_lose_nothing(ingestor: Ingestor, tmp_path: Path) -> None:
    docs = make_folder(tmp_path)
    assert ingestor.ingest([docs]).ok
    before = ingestor.index.counts()
    # A new version of a stored file that is a bomb must not replace the stored one.
    docx_bomb(docs / "policy.docx")
    blank_pdf(docs / "blank.pdf", 5_000)
    one_line(docs / "oneline.txt", 50_000_000)
    (docs / "ferry.md").write_text("# Ferry\n\nThe ferry to Brattli leaves at nine.\n")

    report = ingestor.ingest([docs])

    assert report.seconds < HANG_S  # was minutes per file, and 3.5 GB
    statuses = by_name(report)
    assert statuses == {
        "guide.md": FileStatus.UNCHANGED,
        "notes.txt": FileStatus.UNCHANGED,
        "report.pdf": FileStatus.UNCHANGED,
        "policy.docx": FileStatus.FAILED,
        "blank.pdf": FileStatus.FAILED,
        "oneline.txt": FileStatus.FAILED,
        "ferry.md": FileStatus.ADDED,
    }
    messages = {Path(f.path).name: f.message for f in report.files if f.message}
    assert "MMRAG_INGEST_MAX_UNPACKED_MB" in messages["policy.docx"]
    assert (
        "5,000 pages" in messages["blank.pdf"] and "MMRAG_INGEST_MAX_PAGES" in messages["blank.pdf"]
    )
    assert "50,000,000 characters" in messages["oneline.txt"]
    for name, message in messages.items():
        assert message.startswith(str(docs / name)), message  # names the file
    after = ingestor.index.counts()
    assert after[Corpus.DOCUMENT] == before[Corpus.DOCUMENT] + 1  # only ferry.md
    assert after[Corpus.PARAGRAPH] == before[Corpus.PARAGRAPH] + 1
    # The stored version of the file the bomb replaced is still there and found.
    assert search_sources(ingestor, "book flights through the internal portal")[0] == "policy.docx"
    assert search_sources(ingestor, "when does the ferry leave")[0] == "ferry.md"


# --- the costs behind the limits ----------------------------------------------------------


def test_a_giant_line_under_the_limit_is_chunked_and_weighed_in_bounded_memory(
    tmp_path: Path,
) -> None:
    path = one_line(tmp_path / "line.txt", 15_000_000)
    result = in_child(
        f"""
        from pathlib import Path
        from ingest.chunking import chunk
        from ingest.text import TextLoader
        import re
        from retrieval.sparse import BM25Encoder
        doc = TextLoader().load(Path({str(path)!r}))
        passages = chunk(doc)
        BM25Encoder().encode([doc.texts[0]])  # the document item's sparse vector
        text = doc.texts[0]
        assert all(text[p.char_start:p.char_end] == p.text for p in passages)
        sizes = [len(p.text.split()) for p in passages]
        words = sum(1 for _ in re.finditer(r"\\S+", text))
        result = {{"passages": len(passages), "largest": max(sizes), "kept": sum(sizes) == words}}
        """
    )
    assert result["passages"] > 14_000 and result["largest"] <= 300 and result["kept"]
    # The text itself is 15 MB. Word lists of it took 390 MB more (3.5 GB in all at 50 MB).
    assert result["peak_mb"] - baseline_mb() < 200


def test_runs_of_blanks_and_digits_cost_linear_time(tmp_path: Path) -> None:
    """Three patterns were quadratic: a line of 40,000 spaces took 17 s to split into
    paragraphs and 10 s to cut into sentences; 8,000 digits 3 s to judge as a table row."""
    words = " ".join(f"word{i}" for i in range(400))
    text = tmp_path / "blanks.txt"
    text.write_text(f"{words}\n{' ' * 1_000_000}\n{words}{' ' * 1_000_000}{words}.\n")
    pdf = write_pdf(tmp_path / "digits.pdf", [["1" * 3_000 + " 2 3", "x" * 60]])
    result = in_child(
        f"""
        from pathlib import Path
        from ingest.chunking import chunk
        from ingest.pdf import PdfLoader, _tabular
        from ingest.text import TextLoader
        doc = TextLoader().load(Path({str(text)!r}))
        passages = chunk(doc)
        PdfLoader().load(Path({str(pdf)!r}))
        assert _tabular("1" * 1_000_000 + "x a b")  is False
        result = {{"sections": len(doc.sections), "passages": len(passages)}}
        """,
        timeout=30,
    )
    assert result["sections"] == 2 and result["passages"] >= 4


def test_blank_pages_are_not_rendered_for_ocr(tmp_path: Path) -> None:
    """OCR of 1,500 empty pages (under the page limit): none is read, and none costs a
    colour render (150 s for 5,000 before). The analyser is never asked."""
    path = blank_pdf(tmp_path / "blank.pdf", 1_500)

    def no_analyzer() -> None:
        raise AssertionError("blank pages must not reach OCR")

    media = MediaIngest(tmp_path / "media", image_analyzer=no_analyzer, video_analyzer=no_analyzer)
    assert media.ocr_pages(path, range(1, 1_501)) == {}


def test_a_huge_figure_in_a_pdf_is_skipped_not_decoded(tmp_path: Path) -> None:
    """A 400 KB PDF whose image decodes to 20,000 x 20,000 pixels took 2 GB."""
    from ingest.pdfium import figures

    path = tmp_path / "bomb.pdf"
    path.write_bytes(_pdf_with_gray_image(20_000, 20_000))
    warnings: list[str] = []
    assert figures(path, 128, warnings) == []
    assert warnings == [
        "page 1: an image of 20000 x 20000 pixels skipped "
        "(over the limit of 50,000,000 pixels per picture)"
    ]


def _pdf_with_gray_image(width: int, height: int) -> bytes:
    """A one-page PDF showing one Flate-compressed black greyscale image."""
    import zlib

    packer = zlib.compressobj(9)
    row = b"\0" * width
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    content = b"q 612 0 0 792 0 0 cm /Im0 Do Q"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /XObject << /Im0 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
        b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray "
        b"/BitsPerComponent 8 /Filter /FlateDecode /Length %d >>\nstream\n%s\nendstream"
        % (width, height, len(data), data),
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (n, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def test_video_frames_over_the_pixel_limit_are_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A header may claim frames of 65535 x 65535; each would be decoded at that size."""
    import ingest.video.analyzer
    from ingest.video.analyzer import PyAVVideoAnalyzer

    video = ROOT.parent / "shared" / "eval" / "video" / "files" / "realshort.mp4"
    if not video.is_file():
        pytest.skip("the evaluation videos (../shared/eval/video) are not here")
    monkeypatch.setattr(ingest.video.analyzer, "MAX_IMAGE_PIXELS", 1_000)
    with pytest.raises(LimitError) as err:
        PyAVVideoAnalyzer(None).analyze(video, tmp_path)
    assert str(err.value).startswith(f"{video}: video frames of ")
    assert str(err.value).endswith(" pixels, over the limit of 1,000 pixels per picture")


def test_entity_expansion_is_not_performed(tmp_path: Path) -> None:
    """A "billion laughs" DTD in a DOCX's XML or an HTML page: ten levels of ten
    references would expand to 10 GB; it must cost nothing and never come out as text."""
    levels = ['<!ENTITY l0 "laugh">'] + [
        f'<!ENTITY l{n} "{f"&l{n - 1};" * 10}">' for n in range(1, 10)
    ]
    dtd = "<!DOCTYPE w:document [" + "".join(levels) + "]>"
    docx_path = docx_bomb(tmp_path / "laughs.docx", xml_mb=0)
    with zipfile.ZipFile(docx_path) as z:
        parts = {i.filename: z.read(i) for i in z.infolist()}
    xml = parts["word/document.xml"].decode()
    head, _, rest = xml.partition("?>")
    parts["word/document.xml"] = (
        head
        + "?>"
        + dtd
        + rest.replace("<w:body>", "<w:body><w:p><w:r><w:t>&l9;</w:t></w:r></w:p>")
    ).encode()
    with zipfile.ZipFile(docx_path, "w") as z:
        for name, data in parts.items():
            z.writestr(name, data)
    html = tmp_path / "laughs.html"
    html.write_text(
        "<!DOCTYPE html ["
        + "".join(levels)
        + "]><html><body><p>Hello &l9; there.</p></body></html>"
    )
    result = in_child(
        f"""
        from pathlib import Path
        from ingest.docx import DocxLoader
        from ingest.html import HtmlLoader
        from retrieval.errors import LoaderError
        texts = []
        for loader, path in ((DocxLoader(), {str(docx_path)!r}), (HtmlLoader(), {str(html)!r})):
            try:
                texts.append(" ".join(loader.load(Path(path)).texts))
            except LoaderError as e:
                texts.append("refused: " + str(e))
        result = {{"longest": max(map(len, texts)), "laughs": sum(t.count("laugh") for t in texts)}}
        """,
        timeout=30,
    )
    assert result["longest"] < 10_000 and result["laughs"] < 100
    assert result["peak_mb"] - baseline_mb() < 100


def test_deeply_nested_html_costs_linear_time(tmp_path: Path) -> None:
    """Each picture searched its ancestors, each figure and cell its descendants, each
    header its ancestors: 100,000 pictures 250 deep took 230 s, and nested figure
    captions or headers never finished."""
    pictures = tmp_path / "pictures.html"
    pictures.write_text(
        "<html><body>" + "<div>" * 250 + "<p>Gallery</p>" + '<img src="a.png" alt="A">' * 100_000
    )
    nested = tmp_path / "nested.html"
    nested.write_text(
        "<html><body>"
        + "<figure><img src=f.png><figcaption>Caption" * 20_000
        + "<table><tr><td>" * 20_000
        + "cell"
        + "<header><p>h</p>" * 20_000
    )
    result = in_child(
        f"""
        from pathlib import Path
        from ingest.html import HtmlLoader
        a = HtmlLoader().load(Path({str(pictures)!r}))
        b = HtmlLoader().load(Path({str(nested)!r}))
        result = {{
            "pictures": len(a.images),
            "captions": len({{i.caption for i in b.images}}),
            "first": b.images[0].caption[:30],
            "longest": max(len(i.caption) for i in b.images),
            "text": "cell" in b.texts[0],
        }}
        """,
        timeout=60,
    )
    assert result["pictures"] == 100_000
    assert result["first"] == "Caption Caption Caption Captio"  # nested captions, bounded
    assert result["longest"] <= 310 and result["text"]
