"""Loaders against real files built in ``tmp_path`` (reportlab PDFs, python-docx files)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from ingest.base import ParsedDocument, loaders_by_suffix
from ingest.docx import DocxLoader
from ingest.html import HtmlLoader
from ingest.loaders import default_loaders, load_file
from ingest.markdown import MarkdownLoader
from ingest.pdf import PdfLoader, with_page_texts
from ingest.text import TextLoader
from retrieval.errors import EmptyDocumentError, LimitError, LoaderError, UnsupportedTypeError
from tests.helpers import write_pdf

LOADERS = loaders_by_suffix(default_loaders())


def assert_offsets(doc: ParsedDocument) -> None:
    assert doc.sections
    for s in doc.sections:
        assert s.text.strip() == s.text != ""
        assert doc.page_text(s.page)[s.char_start : s.char_start + len(s.text)] == s.text


def sections_by_text(doc: ParsedDocument) -> dict[str, tuple[int | None, tuple[str, ...]]]:
    return {s.text: (s.page, s.heading) for s in doc.sections}


# --- protocol -------------------------------------------------------------------------


def test_default_loaders_cover_each_suffix_once() -> None:
    loaders = default_loaders()
    suffixes = [s for loader in loaders for s in loader.suffixes]
    assert len(suffixes) == len(set(suffixes))
    assert set(suffixes) >= {".pdf", ".docx", ".md", ".markdown", ".html", ".htm", ".txt"}
    for loader in loaders:
        assert all(s.startswith(".") and s == s.lower() for s in loader.suffixes)
        assert "/" in loader.media_type


def test_unsupported_suffix_names_file_suffix_and_supported(tmp_path: Path) -> None:
    path = tmp_path / "notes.xyz"
    path.write_text("hello")
    with pytest.raises(UnsupportedTypeError) as err:
        load_file(path, LOADERS)
    message = str(err.value)
    assert "notes.xyz" in message and "'.xyz'" in message and ".pdf" in message


def test_suffix_match_ignores_case(tmp_path: Path) -> None:
    path = tmp_path / "README.TXT"
    path.write_text("Upper-case suffixes are common on Windows.")
    assert load_file(path, LOADERS).media_type == "text/plain"


def test_missing_file_is_a_loader_error(tmp_path: Path) -> None:
    with pytest.raises(LoaderError, match=r"gone\.txt: no such file"):
        load_file(tmp_path / "gone.txt", LOADERS)


@pytest.mark.parametrize("suffix", [".pdf", ".docx", ".md", ".html", ".txt"])
def test_zero_byte_file_is_empty(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"nothing{suffix}"
    path.write_bytes(b"")
    with pytest.raises(EmptyDocumentError, match=f"nothing\\{suffix}: empty file"):
        load_file(path, LOADERS)


@pytest.mark.parametrize("suffix", [".md", ".html", ".txt"])
def test_whitespace_only_file_is_empty(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"blank{suffix}"
    path.write_text(" \n\t\n   \r\n")
    with pytest.raises(EmptyDocumentError, match="blank"):
        load_file(path, LOADERS)


def test_markup_without_text_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "shell.html"
    path.write_text("<html><head><script>var a = 1;</script></head><body><nav>Menu</nav></body>")
    with pytest.raises(EmptyDocumentError, match=r"shell\.html: no text found"):
        load_file(path, LOADERS)


# --- PDF ------------------------------------------------------------------------------


def test_pdf_pages_are_numbered_from_one(tmp_path: Path) -> None:
    pages = [[f"Heading of page {n}", f"Marker text number {n} lives here."] for n in (1, 2, 3)]
    path = write_pdf(tmp_path / "three.pdf", pages, title="Three Pages")
    doc = load_file(path, LOADERS)

    assert doc.page_count == 3 and len(doc.texts) == 3
    assert doc.title == "Three Pages"
    assert doc.media_type == "application/pdf"
    for n in (1, 2, 3):
        assert f"Marker text number {n}" in doc.page_text(n)
    found = sections_by_text(doc)
    assert found["Marker text number 2 lives here."] == (2, ())
    assert found["Heading of page 3"] == (3, ())
    assert_offsets(doc)


def test_pdf_joins_wrapped_lines_into_paragraphs(tmp_path: Path) -> None:
    wrapped = [
        "The first line of a paragraph runs close to the right margin of the page and then",
        "wraps onto this second line, which again runs close to the right margin of a page",
        "and ends here.",
    ]
    path = write_pdf(tmp_path / "wrap.pdf", [["Overview", *wrapped, "Next heading"]])
    doc = load_file(path, LOADERS)
    texts = [s.text for s in doc.sections]
    assert texts == ["Overview", " ".join(wrapped), "Next heading"]
    assert_offsets(doc)


def test_pdf_title_falls_back_to_file_name(tmp_path: Path) -> None:
    # reportlab writes "untitled" when no title is set: a placeholder, not a title; the
    # first line of a PDF is often boilerplate, so the file name stands in.
    path = write_pdf(tmp_path / "annual.pdf", [["UNITED STATES", "Body text."]])
    assert load_file(path, LOADERS).title == "annual"
    titled = write_pdf(tmp_path / "t.pdf", [["Body text."]], title="Annual Report 2023")
    assert load_file(titled, LOADERS).title == "Annual Report 2023"


def test_pdf_page_without_text_is_a_warning(tmp_path: Path) -> None:
    path = write_pdf(tmp_path / "mixed.pdf", [["Only this page has text."], []])
    doc = load_file(path, LOADERS)
    assert doc.page_count == 2
    assert doc.page_text(2) == ""
    assert {s.page for s in doc.sections} == {1}
    assert any("1 of 2 pages had no text layer (2)" in w for w in doc.warnings)


def test_pdf_without_any_text_layer_lists_its_pages_for_ocr(tmp_path: Path) -> None:
    path = write_pdf(tmp_path / "scan.pdf", [[], []])
    doc = load_file(path, LOADERS)
    assert doc.sections == () and doc.untexted_pages == (1, 2)
    assert doc.warnings == ("2 of 2 pages had no text layer (1, 2)",)


def test_page_texts_found_later_fill_the_untexted_pages(tmp_path: Path) -> None:
    path = write_pdf(tmp_path / "mixed.pdf", [[], ["Typed page."], []])
    doc = load_file(path, LOADERS)
    assert doc.untexted_pages == (1, 3)
    scan = "The Brattli quay was rebuilt in 2011 and is now\n212 metres long. Ships up to"
    filled = with_page_texts(doc, {1: scan + "\nnine metres.", 2: "ignored", 3: " "}, "OCR")
    assert filled.untexted_pages == (3,)  # page 3's text was blank: still untexted
    pages = [s.page for s in filled.sections]
    assert pages == sorted(pages) and set(pages) == {1, 2}  # page order kept
    assert filled.page_text(1).startswith("The Brattli quay") and "212 metres" in filled.page_text(
        1
    )
    assert filled.page_text(2) == "Typed page."  # a page with a text layer is not replaced
    assert filled.warnings == ("1 of 3 pages read by OCR", "1 of 3 pages had no text layer (3)")
    assert_offsets(filled)
    assert with_page_texts(doc, {}, "OCR") is doc


def test_random_bytes_are_not_a_pdf(tmp_path: Path) -> None:
    path = tmp_path / "fake.pdf"
    path.write_bytes(random.Random(7).randbytes(4096))
    with pytest.raises(LoaderError, match=r"fake\.pdf: not a readable PDF \(.+\)"):
        load_file(path, LOADERS)


def test_truncated_pdf(tmp_path: Path) -> None:
    whole = write_pdf(tmp_path / "whole.pdf", [["Some text."]] * 3).read_bytes()
    path = tmp_path / "cut.pdf"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(LoaderError, match=r"cut\.pdf: not a readable PDF"):
        load_file(path, LOADERS)


def test_encrypted_pdf(tmp_path: Path) -> None:
    from reportlab.pdfgen import canvas

    path = tmp_path / "locked.pdf"
    pdf = canvas.Canvas(str(path), encrypt="secret")
    pdf.drawString(72, 720, "Confidential")
    pdf.showPage()
    pdf.save()
    with pytest.raises(LoaderError, match=r"locked\.pdf: the PDF is encrypted"):
        load_file(path, LOADERS)


# --- Markdown -------------------------------------------------------------------------

MARKDOWN = """\
---
title: front matter title
tags: [a, b]
---
# Guide

Intro paragraph
spanning two lines.

## Install

### On Linux

- apt-get update
- apt-get install thing

```bash
make install
```

## Usage

| flag | meaning |
| ---- | ------- |
| -v   | verbose |

> A quoted tip.
"""


def test_markdown_heading_paths_and_blocks(tmp_path: Path) -> None:
    path = tmp_path / "guide.md"
    path.write_text(MARKDOWN)
    doc = load_file(path, LOADERS)

    assert doc.title == "Guide"
    assert doc.texts == (MARKDOWN,)
    found = sections_by_text(doc)
    assert found == {
        "Intro paragraph\nspanning two lines.": (None, ("Guide",)),
        "- apt-get update\n- apt-get install thing": (None, ("Guide", "Install", "On Linux")),
        "make install": (None, ("Guide", "Install", "On Linux")),
        "| flag | meaning |\n| ---- | ------- |\n| -v   | verbose |": (None, ("Guide", "Usage")),
        "> A quoted tip.": (None, ("Guide", "Usage")),
    }
    assert_offsets(doc)


def test_markdown_without_h1_takes_stem_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "changelog.md"
    path.write_bytes(b"## 1.0\r\n\r\nFirst release.\r\n")
    doc = load_file(path, LOADERS)
    assert doc.title == "changelog"
    assert [(s.text, s.heading) for s in doc.sections] == [("First release.", ("1.0",))]
    assert_offsets(doc)


# --- HTML -----------------------------------------------------------------------------

HTML = """<!doctype html>
<html><head><title> Product   Manual </title><style>p { color: red }</style></head>
<body>
<header><a href="/">Home</a> | <a href="/docs">Docs</a></header>
<nav><ul><li>Menu item</li></ul></nav>
<h1>Manual</h1>
<p>Welcome to the
   <b>manual</b>.</p>
<h2>Setup</h2>
<h3>Windows</h3>
<ul><li>Run the installer.</li><li>Restart.</li></ul>
<h2>Specs</h2>
<table><tr><th>Weight</th><th>2 kg</th></tr><tr><td>Colour</td><td><i>blue</i></td></tr></table>
<pre>line one
  indented</pre>
<script>alert("not text")</script>
<footer>Copyright</footer>
</body></html>
"""


def test_html_heading_paths_and_dropped_chrome(tmp_path: Path) -> None:
    path = tmp_path / "manual.html"
    path.write_text(HTML)
    doc = load_file(path, LOADERS)

    assert doc.title == "Product Manual"
    found = sections_by_text(doc)
    assert found == {
        "Welcome to the manual.": (None, ("Manual",)),
        "Run the installer.": (None, ("Manual", "Setup", "Windows")),
        "Restart.": (None, ("Manual", "Setup", "Windows")),
        "Weight | 2 kg": (None, ("Manual", "Specs")),
        "Colour | blue": (None, ("Manual", "Specs")),
        "line one\n  indented": (None, ("Manual", "Specs")),
    }
    for dropped in ("Home", "Menu item", "Copyright", "alert", "color"):
        assert dropped not in doc.texts[0]
    assert_offsets(doc)


def test_html_title_falls_back_to_h1(tmp_path: Path) -> None:
    path = tmp_path / "page.htm"
    path.write_text("<body><article><header><h1>Post title</h1></header><p>Body.</p></article>")
    doc = load_file(path, LOADERS)
    assert doc.title == "Post title"
    assert sections_by_text(doc) == {"Body.": (None, ("Post title",))}


# --- DOCX -----------------------------------------------------------------------------


def test_docx_heading_paths_and_table_rows(tmp_path: Path) -> None:
    import docx

    document = docx.Document()
    document.add_heading("Quarterly Report", 0)
    document.add_paragraph("Opening remarks.")
    document.add_heading("Results", 1)
    document.add_heading("Revenue", 2)
    document.add_paragraph("Revenue grew by 4%.")
    table = document.add_table(rows=2, cols=2)
    for r, row in enumerate([("Region", "Sales"), ("EMEA", "12")]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    document.add_heading("Outlook", 1)
    document.add_paragraph("Stable.")
    path = tmp_path / "report.docx"
    document.save(str(path))

    doc = load_file(path, LOADERS)
    assert doc.title == "Quarterly Report"
    assert [(s.text, s.heading) for s in doc.sections] == [
        ("Opening remarks.", ("Quarterly Report",)),
        ("Revenue grew by 4%.", ("Quarterly Report", "Results", "Revenue")),
        ("Region | Sales", ("Quarterly Report", "Results", "Revenue")),
        ("EMEA | 12", ("Quarterly Report", "Results", "Revenue")),
        ("Stable.", ("Quarterly Report", "Outlook")),
    ]
    assert_offsets(doc)


def test_corrupt_docx(tmp_path: Path) -> None:
    path = tmp_path / "broken.docx"
    path.write_bytes(b"PK\x03\x04 this is not really a zip archive")
    with pytest.raises(LoaderError, match=r"broken\.docx: not a readable Word document"):
        load_file(path, LOADERS)


# --- plain text and decoding ----------------------------------------------------------


def test_text_paragraphs_and_offsets(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("\n\n  First paragraph,\nsecond line.  \n \t\nSecond paragraph.\n\n\n")
    doc = load_file(path, LOADERS)
    assert doc.title == "notes"
    assert [s.text for s in doc.sections] == ["First paragraph,\nsecond line.", "Second paragraph."]
    assert not doc.warnings
    assert_offsets(doc)


def test_utf8_bom_is_not_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeffCafé au lait.".encode())
    doc = load_file(path, LOADERS)
    assert doc.texts[0] == "Café au lait." and not doc.warnings


@pytest.mark.parametrize("suffix", [".txt", ".md", ".html"])
def test_cp1252_text_decodes_with_a_warning(tmp_path: Path, suffix: str) -> None:
    text = "Le café était très agréable — naïve façade, déjà vu, “quotes” and 5 €."
    path = tmp_path / f"legacy{suffix}"
    path.write_bytes(text.encode("cp1252"))
    doc = load_file(path, LOADERS)
    assert text in doc.texts[0]
    assert doc.warnings == ("decoded as cp1252 (not UTF-8)",)


def test_cyrillic_legacy_text_is_not_forced_into_cp1252(tmp_path: Path) -> None:
    text = "Привет, это обычный русский текст для проверки кодировки файла. " * 3
    path = tmp_path / "russian.txt"
    path.write_bytes(text.encode("cp1251"))
    doc = load_file(path, LOADERS)
    assert "русский текст" in doc.texts[0]
    assert doc.warnings and "cp1252" not in doc.warnings[0]


@pytest.mark.parametrize("with_nul", [True, False])
def test_binary_garbage_is_refused(tmp_path: Path, with_nul: bool) -> None:
    rng = random.Random(3)
    alphabet = range(256) if with_nul else range(1, 256)
    path = tmp_path / "garbage.txt"
    path.write_bytes(bytes(rng.choice(alphabet) for _ in range(4096)))
    with pytest.raises(LoaderError) as err:
        load_file(path, LOADERS)
    assert str(err.value) == (f"{path}: not UTF-8 text and no text encoding could be detected")


def test_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_text("word " * 100)
    with pytest.raises(LimitError) as err:
        TextLoader(max_bytes=100).load(path)
    assert str(err.value) == (
        f"{path}: 500 bytes, over the limit of 100 bytes for a text, Markdown or HTML file "
        "(raise MMRAG_INGEST_MAX_TEXT_MB to ingest it)"
    )
    assert TextLoader(max_bytes=1000).load(path).sections


def test_size_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        MarkdownLoader(max_bytes=0)


def test_loaders_are_usable_directly(tmp_path: Path) -> None:
    # load_file only dispatches; each loader works on its own too.
    (tmp_path / "a.html").write_text("<p>Hi there.</p>")
    assert HtmlLoader().load(tmp_path / "a.html").sections[0].text == "Hi there."
    pdf = write_pdf(tmp_path / "a.pdf", [["Hi there."]])
    assert PdfLoader().load(pdf).sections[0].text == "Hi there."
    with pytest.raises(LoaderError, match=r"a\.pdf: not a readable Word document"):
        DocxLoader().load(pdf)


def test_unreadable_file(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root can read anything")
    path = tmp_path / "secret.txt"
    path.write_text("text")
    path.chmod(0)
    with pytest.raises(LoaderError, match=r"secret\.txt: cannot be read"):
        load_file(path, LOADERS)


def test_markdown_and_html_list_the_pictures_they_show(tmp_path: Path) -> None:
    md = tmp_path / "trip.md"
    md.write_text(
        '# Trip\n\nWe saw this:\n\n![A red  fox](photos/fox.jpg "At dawn")\n', encoding="utf-8"
    )
    (ref,) = MarkdownLoader().load(md).images
    assert (ref.src, ref.caption) == ("photos/fox.jpg", "A red fox. At dawn")
    html = tmp_path / "trip.html"
    html.write_text(
        "<html><body><p>Trip</p><script>x='<img src=no.png>'</script>"
        '<figure><img src="fox.jpg" alt="A fox"><figcaption>At <b>dawn</b></figcaption></figure>'
        '<nav><img src="menu.png" alt="menu"></nav><img alt="no source"></body></html>',
        encoding="utf-8",
    )
    refs = HtmlLoader().load(html).images
    # Navigation furniture and images without a source are not pictures of the page.
    assert [(r.src, r.caption) for r in refs] == [("fox.jpg", "A fox. At dawn")]
