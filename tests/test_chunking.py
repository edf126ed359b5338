"""The chunker's contract: bounded sizes, exact spans, no passage across a page or heading."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from ingest.base import ParsedDocument, Passage, Section, loaders_by_suffix
from ingest.chunking import chunk
from ingest.loaders import default_loaders, load_file
from ingest.markdown import MarkdownLoader

FINANCEBENCH = Path("/work/shared/eval/documents/financebench/pdfs")

Block = tuple[tuple[str, ...], str]  # (heading path, paragraph text)


def make_doc(pages: Sequence[Sequence[Block]], *, paged: bool = True) -> ParsedDocument:
    """A document whose page texts are its paragraphs joined by blank lines."""
    texts: list[str] = []
    sections: list[Section] = []
    for number, blocks in enumerate(pages, start=1):
        text = ""
        for heading, paragraph in blocks:
            if text:
                text += "\n\n"
            sections.append(Section(paragraph, number if paged else None, heading, len(text)))
            text += paragraph
        texts.append(text)
    return ParsedDocument(
        source="mem",
        title="t",
        media_type="text/plain",
        sections=tuple(sections),
        texts=tuple(texts),
        page_count=len(texts) if paged else None,
    )


def sentence(rng: random.Random, words: int) -> str:
    vocabulary = ["revenue", "grew", "in", "the", "quarter", "while", "costs", "fell", "by", "4%"]
    body = " ".join(rng.choice(vocabulary) for _ in range(words - 1))
    return f"{rng.choice(['Sales', 'Margins', 'Demand', '2023'])} {body}."


def paragraph(rng: random.Random, sentences: int) -> str:
    return " ".join(sentence(rng, rng.randint(6, 16)) for _ in range(sentences))


def words(passage: Passage) -> int:
    return len(passage.text.split())


def assert_spans(doc: ParsedDocument, passages: Sequence[Passage]) -> None:
    for p in passages:
        assert p.text == doc.page_text(p.page)[p.char_start : p.char_end]
        assert p.text.strip() == p.text != ""


def assert_within_one_group(doc: ParsedDocument, passages: Sequence[Passage]) -> None:
    """Every section a passage overlaps has the passage's page and heading."""
    for p in passages:
        overlapping = [
            s
            for s in doc.sections
            if s.page == p.page
            and s.char_start < p.char_end
            and s.char_start + len(s.text) > p.char_start
        ]
        assert overlapping
        assert {s.heading for s in overlapping} == {p.heading}


def test_long_document_sizes_within_bounds() -> None:
    rng = random.Random(11)
    headings = [("Business",), ("Business", "Segments"), ("Risk Factors",)]
    # Two headings per page: groups of ~270 words, so some passages are group tails.
    pages = [
        [(headings[(n + i // 7) % 3], paragraph(rng, rng.randint(2, 5))) for i in range(14)]
        for n in range(6)
    ]
    doc = make_doc(pages)
    passages = chunk(doc)

    assert len(passages) > 12
    assert all(words(p) <= 300 for p in passages)
    # With paragraphs of 12-80 words a short passage can always merge into its
    # predecessor, so only a group too small on its own may stay under min_words.
    for p in passages:
        group_words = sum(
            len(s.text.split()) for s in doc.sections if (s.page, s.heading) == (p.page, p.heading)
        )
        assert words(p) >= 40 or group_words < 40 or words(p) == group_words
    assert sum(100 <= words(p) <= 300 for p in passages) >= 0.8 * len(passages)
    assert_spans(doc, passages)
    assert_within_one_group(doc, passages)


def test_passages_never_cross_pages_or_headings() -> None:
    rng = random.Random(5)
    doc = make_doc(
        [
            [(("A",), paragraph(rng, 3)), (("A",), paragraph(rng, 2)), (("B",), paragraph(rng, 1))],
            [(("B",), paragraph(rng, 2)), (("B", "C"), paragraph(rng, 2))],
        ]
    )
    passages = chunk(doc, target_words=1000, max_words=1000, min_words=1)
    # Every group fits one passage, so there is exactly one per (page, heading).
    assert [(p.page, p.heading) for p in passages] == [
        (1, ("A",)),
        (1, ("B",)),
        (2, ("B",)),
        (2, ("B", "C")),
    ]
    assert_spans(doc, passages)
    assert_within_one_group(doc, passages)


def test_long_paragraph_is_split_at_sentence_ends() -> None:
    rng = random.Random(2)
    long_paragraph = " ".join(sentence(rng, 12) for _ in range(90))  # 1080 words
    doc = make_doc([[((), long_paragraph)]], paged=False)
    passages = chunk(doc)

    assert len(passages) >= 4
    assert all(words(p) <= 300 for p in passages)
    for p in passages:
        assert p.text.endswith(".")
        assert re.match(r"[A-Z0-9]", p.text)
    # Nothing lost, nothing repeated: passages tile the paragraph up to the spaces.
    assert " ".join(p.text for p in passages) == long_paragraph
    assert_spans(doc, passages)


def test_sentence_without_punctuation_is_split_at_words() -> None:
    text = " ".join(f"w{i}" for i in range(1000))
    doc = make_doc([[((), text)]], paged=False)
    passages = chunk(doc)
    assert all(words(p) <= 300 for p in passages)
    assert " ".join(p.text for p in passages) == text


def test_list_lines_are_boundaries(tmp_path: Path) -> None:
    items = "\n".join(f"- item {i} with a few words and no full stop" for i in range(60))
    path = tmp_path / "list.md"
    path.write_text(f"# List\n\n{items}\n")
    doc = MarkdownLoader().load(path)
    passages = chunk(doc)
    assert len(passages) >= 2
    for p in passages:
        assert p.text.startswith("- item ") and p.text.endswith("no full stop")
    assert_spans(doc, passages)


def test_tiny_tail_merges_into_previous_passage() -> None:
    rng = random.Random(8)
    big = " ".join(sentence(rng, 10) for _ in range(20))  # 200 words: closes a passage
    tail = sentence(rng, 10)
    same = chunk(make_doc([[(("H",), big), (("H",), tail)]]))
    assert len(same) == 1 and words(same[0]) == 210

    across_heading = chunk(make_doc([[(("H",), big), (("Other",), tail)]]))
    assert [words(p) for p in across_heading] == [200, 10]


def test_tail_stays_alone_when_merging_would_exceed_max() -> None:
    rng = random.Random(9)
    big = " ".join(sentence(rng, 10) for _ in range(29))  # 290 words
    tail = sentence(rng, 20)
    passages = chunk(make_doc([[((), big), ((), tail)]]))
    assert [words(p) for p in passages] == [290, 20]


def test_invalid_sizes_are_rejected() -> None:
    doc = make_doc([[((), "Some text.")]])
    with pytest.raises(ValueError, match="min_words"):
        chunk(doc, target_words=400, max_words=300)


def test_chunks_of_loaded_files_keep_their_spans(tmp_path: Path) -> None:
    rng = random.Random(4)
    body = "\n\n".join(paragraph(rng, rng.randint(3, 12)) for _ in range(30))
    path = tmp_path / "essay.txt"
    path.write_text(body)
    doc = load_file(path, loaders_by_suffix(default_loaders()))
    passages = chunk(doc)
    assert len(passages) > 5
    assert_spans(doc, passages)
    assert_within_one_group(doc, passages)


@pytest.mark.skipif(not FINANCEBENCH.is_dir(), reason="FinanceBench PDFs not present")
def test_financebench_pdfs_load_and_chunk(capsys: pytest.CaptureFixture[str]) -> None:
    loaders = loaders_by_suffix(default_loaders())
    files = sorted(FINANCEBENCH.glob("*.pdf"))
    assert files
    started, cpu_started = time.perf_counter(), time.process_time()
    docs = [load_file(path, loaders) for path in files]
    chunked = [chunk(doc) for doc in docs]
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started

    for doc, passages in zip(docs, chunked, strict=True):
        assert doc.page_count and doc.page_count == len(doc.texts)
        assert passages
        assert all(words(p) <= 300 for p in passages)
        assert all(p.page is not None and 1 <= p.page <= doc.page_count for p in passages)
        assert_spans(doc, passages)
        for s in doc.sections:
            assert doc.page_text(s.page)[s.char_start : s.char_start + len(s.text)] == s.text
    with capsys.disabled():
        pages = sum(doc.page_count or 0 for doc in docs)
        total = sum(map(len, chunked))
        print(
            f"\n{len(docs)} PDFs, {pages} pages, {total} passages: "
            f"{seconds:.2f} s ({cpu_seconds:.2f} s CPU)"
        )
