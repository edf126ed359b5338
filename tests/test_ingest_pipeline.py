"""The ingest pipeline end to end: real files, real MiniLM, real embedded Qdrant."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from ingest.base import FileStatus
from ingest.media import MediaIngest
from ingest.pipeline import Ingestor
from ingest.versions import UNFINISHED_MARK, file_sha256
from retrieval.base import Corpus, EncoderInfo, Item, Store, Vectors, item_id
from retrieval.encoders import SentenceTransformerEncoder
from retrieval.errors import EncoderMismatchError
from retrieval.index import Index
from retrieval.store import QdrantStore
from tests.helpers import by_name, make_folder, search_sources


class CountingEncoder:
    """Obeys TextEncoder; counts the texts it is asked to embed, delegating to MiniLM."""

    def __init__(self, inner: SentenceTransformerEncoder) -> None:
        self.inner = inner
        self.info: EncoderInfo = inner.info
        self.texts = 0

    def encode(self, texts: Sequence[str], *, query: bool = False) -> Vectors:
        self.texts += len(texts)
        return self.inner.encode(texts, query=query)


@pytest.fixture()
def counting(encoder: SentenceTransformerEncoder) -> CountingEncoder:
    return CountingEncoder(encoder)


@pytest.fixture()
def ingestor(store: Store, counting: CountingEncoder) -> Ingestor:
    return Ingestor(Index(store, counting), batch_size=8)


def test_folder_is_ingested_recursively_with_pages_and_headings(
    ingestor: Ingestor, tmp_path: Path
) -> None:
    docs = make_folder(tmp_path)
    report = ingestor.ingest([docs])
    assert report.ok
    assert by_name(report) == {
        "guide.md": FileStatus.ADDED,
        "policy.docx": FileStatus.ADDED,
        "report.pdf": FileStatus.ADDED,
        "notes.txt": FileStatus.ADDED,
    }
    counts = ingestor.index.counts()
    assert counts[Corpus.DOCUMENT] == 4
    assert counts[Corpus.PARAGRAPH] == sum(f.passages for f in report.files) >= 5
    # The PDF passage keeps its page; the Markdown passage keeps its heading path.
    dividend = ingestor.index.search("dividend approved by the board", [Corpus.PARAGRAPH])
    top = dividend[Corpus.PARAGRAPH][0].item
    assert (Path(top.source).name, top.page) == ("report.pdf", 2)
    gasket = ingestor.index.search("gasket kit XQ-7731-B", [Corpus.PARAGRAPH])
    top = gasket[Corpus.PARAGRAPH][0].item
    assert top.heading == ("Pump guide", "Maintenance")
    assert top.char_start is not None and top.char_end is not None
    text = (docs / "guide.md").read_text(encoding="utf-8")
    assert text[top.char_start : top.char_end] == top.text
    # Passages link to their document item.
    doc_hit = ingestor.index.search("pump guide", [Corpus.DOCUMENT])[Corpus.DOCUMENT][0]
    assert top.parent_id == doc_hit.item.id
    assert top.id in doc_hit.item.extra["passage_ids"]


def test_unchanged_folder_embeds_nothing(
    ingestor: Ingestor, counting: CountingEncoder, tmp_path: Path
) -> None:
    docs = make_folder(tmp_path)
    ingestor.ingest([docs])
    before = ingestor.index.counts()
    counting.texts = 0
    report = ingestor.ingest([docs])
    assert counting.texts == 0
    assert report.embedded == 0
    assert set(by_name(report).values()) == {FileStatus.UNCHANGED}
    assert ingestor.index.counts() == before


def test_changed_file_replaces_its_old_passages(
    ingestor: Ingestor, counting: CountingEncoder, tmp_path: Path
) -> None:
    docs = make_folder(tmp_path)
    ingestor.ingest([docs])
    notes = docs / "sub" / "notes.txt"
    notes.write_text("Parrots can mimic human speech.", encoding="utf-8")
    counting.texts = 0
    report = ingestor.ingest([docs])
    assert by_name(report)["notes.txt"] is FileStatus.UPDATED
    assert by_name(report)["guide.md"] is FileStatus.UNCHANGED
    assert counting.texts == 1  # only the new passage was embedded
    store = ingestor.index.store
    items = store.items_of(Corpus.PARAGRAPH, str(notes.resolve()))
    assert [i.text for i in items] == ["Parrots can mimic human speech."]
    assert len(store.items_of(Corpus.DOCUMENT, str(notes.resolve()))) == 1
    hits = ingestor.index.search("cats sleeping all day", [Corpus.PARAGRAPH])[Corpus.PARAGRAPH]
    assert hits and all("Cats" not in h.item.text for h in hits)
    assert search_sources(ingestor, "parrots imitate speech")[0] == "notes.txt"


def test_bad_files_are_reported_and_the_rest_stored(ingestor: Ingestor, tmp_path: Path) -> None:
    docs = make_folder(tmp_path)
    (docs / "corrupt.pdf").write_bytes(b"%PDF-1.7\n this is not really a pdf \x00\x01")
    (docs / "empty.txt").write_bytes(b"")
    (docs / "data.xyz").write_text("what am I", encoding="utf-8")
    (docs / "binary.txt").write_bytes(bytes(range(256)) * 8)
    report = ingestor.ingest([docs])
    assert not report.ok
    failed = {Path(f.path).name: f.message for f in report.files if f.status is FileStatus.FAILED}
    assert set(failed) == {"corrupt.pdf", "empty.txt", "binary.txt"}
    assert "not a readable PDF" in failed["corrupt.pdf"]
    assert "empty" in failed["empty.txt"]
    # A file of an unknown type inside a folder is skipped, with the reason...
    skipped = {Path(f.path).name: f.message for f in report.files if f.status is FileStatus.SKIPPED}
    assert ".xyz" in skipped["data.xyz"]
    # ...and one named explicitly is an error that names its type and the supported ones.
    (named,) = ingestor.ingest([docs / "data.xyz"]).files
    assert named.status is FileStatus.FAILED
    assert ".xyz" in named.message and ".pdf" in named.message and ".mp4" not in named.message
    assert "not UTF-8" in failed["binary.txt"]
    for name, message in failed.items():
        assert name in message
    assert ingestor.index.counts()[Corpus.DOCUMENT] == 4


def test_legacy_encoded_text_is_ingested_with_a_warning(ingestor: Ingestor, tmp_path: Path) -> None:
    path = tmp_path / "café.txt"
    path.write_bytes("Le café était très chaud à Genève.".encode("cp1252"))
    report = ingestor.ingest([path])
    (result,) = report.files
    assert result.status is FileStatus.ADDED
    assert any("cp1252" in w for w in result.warnings)
    items = ingestor.index.store.items_of(Corpus.PARAGRAPH, str(path.resolve()))
    assert "café" in items[0].text


def test_changed_file_that_no_longer_parses_keeps_its_old_items(
    ingestor: Ingestor, tmp_path: Path
) -> None:
    docs = make_folder(tmp_path)
    ingestor.ingest([docs])
    report_pdf = docs / "report.pdf"
    before = ingestor.index.store.items_of(Corpus.PARAGRAPH, str(report_pdf.resolve()))
    report_pdf.write_bytes(report_pdf.read_bytes()[:200])  # truncated: unreadable
    report = ingestor.ingest([docs])
    assert by_name(report)["report.pdf"] is FileStatus.FAILED
    after = ingestor.index.store.items_of(Corpus.PARAGRAPH, str(report_pdf.resolve()))
    assert sorted(i.id for i in after) == sorted(i.id for i in before) != []


def test_missing_path_is_reported(ingestor: Ingestor, tmp_path: Path) -> None:
    report = ingestor.ingest([tmp_path / "nope.md"])
    assert not report.ok
    assert "nope.md" in report.files[0].message


def test_ingest_into_collection_of_another_encoder_is_refused(
    encoder: SentenceTransformerEncoder, tmp_path: Path
) -> None:
    store = QdrantStore(memory=True)
    store.ensure(
        Corpus.PARAGRAPH,
        EncoderInfo("e5-small", "2", 384),
        Index(store, encoder).sparse[Corpus.PARAGRAPH].info,
    )
    docs = make_folder(tmp_path)
    with pytest.raises(EncoderMismatchError, match="e5-small"):
        Ingestor(Index(store, encoder)).ingest([docs])
    assert store.count(Corpus.PARAGRAPH) == 0


def test_prune_removes_files_gone_from_an_ingested_folder(
    ingestor: Ingestor, tmp_path: Path
) -> None:
    docs = make_folder(tmp_path)
    elsewhere = tmp_path / "elsewhere.md"
    elsewhere.write_text("# Elsewhere\n\nThe Kvistad orchard grows 41 kinds of apple.\n")
    assert ingestor.ingest([docs, elsewhere]).ok
    notes = docs / "sub" / "notes.txt"
    notes.unlink()
    elsewhere.unlink()  # named as a file, not inside an ingested folder: left alone
    kept = ingestor.ingest([docs])
    assert FileStatus.REMOVED not in by_name(kept).values()  # no prune: nothing removed
    assert ingestor.index.store.items_of(Corpus.DOCUMENT, str(notes.resolve()))
    pruned = ingestor.ingest([docs], prune=True)
    assert by_name(pruned) == {
        "guide.md": FileStatus.UNCHANGED,
        "policy.docx": FileStatus.UNCHANGED,
        "report.pdf": FileStatus.UNCHANGED,
        "notes.txt": FileStatus.REMOVED,
    }
    assert pruned.ok
    store = ingestor.index.store
    for corpus in (Corpus.PARAGRAPH, Corpus.DOCUMENT):
        assert not store.items_of(corpus, str(notes.resolve()))
        assert store.items_of(corpus, str(elsewhere.resolve()))
    assert ingestor.index.counts()[Corpus.DOCUMENT] == 4


# --- a killed run (issue 10, item 6); tests/test_crash.py kills real runs ------------------


def part(
    source: str,
    digest: str,
    text: str,
    *,
    n: int = 0,
    kind: str = "passage",
    corpus: Corpus = Corpus.PARAGRAPH,
) -> Item:
    """A part of version ``digest`` of a file, as the pipeline would store it."""
    parent = item_id(source, digest, "document")
    return Item(item_id(source, digest, kind, n), corpus, text, source, digest, parent_id=parent)


def test_parts_without_their_whole_file_item_do_not_mark_a_file_done(
    ingestor: Ingestor, tmp_path: Path
) -> None:
    """What a run killed before a file's document was stored leaves: parts carrying the
    file's hash (a passage, a figure), and parts of an older version never finished."""
    notes = tmp_path / "notes.txt"
    notes.write_text("Cats sleep for most of the day.\n\nThey hunt at dusk.", encoding="utf-8")
    source, digest = str(notes.resolve()), file_sha256(notes)
    ingestor.index.add([part(source, digest, "Cats"), part(source, "v0", "Dogs", n=7)])
    ingestor.index.add([part(source, digest, "a figure", kind="image", corpus=Corpus.IMAGE)])
    report = ingestor.ingest([notes])
    assert by_name(report) == {"notes.txt": FileStatus.ADDED}  # not "unchanged"
    store = ingestor.index.store
    passages = store.items_of(Corpus.PARAGRAPH, source)
    assert [p.text for p in passages] == ["Cats sleep for most of the day.\n\nThey hunt at dusk."]
    (document,) = store.items_of(Corpus.DOCUMENT, source)
    assert document.extra["passage_ids"] == [p.id for p in passages]
    assert not store.items_of(Corpus.IMAGE, source)  # the killed run's figure: gone
    assert by_name(ingestor.ingest([notes])) == {"notes.txt": FileStatus.UNCHANGED}


def test_a_run_killed_before_deleting_the_old_version_resumes_without_parsing(
    ingestor: Ingestor, counting: CountingEncoder, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("Cats sleep for most of the day.", encoding="utf-8")
    ingestor.ingest([notes])
    notes.write_text("Parrots can mimic human speech.", encoding="utf-8")
    source, digest = str(notes.resolve()), file_sha256(notes)
    # The new version stored whole (document last), the old one not yet deleted.
    ingestor.index.add([part(source, digest, "Parrots can mimic human speech.")])
    doc_id = item_id(source, digest, "document")
    ingestor.index.add([Item(doc_id, Corpus.DOCUMENT, "Parrots", source, digest)])
    counting.texts = 0
    report = ingestor.ingest([notes])
    assert by_name(report) == {"notes.txt": FileStatus.UPDATED}
    assert counting.texts == 0 and report.embedded == 0  # nothing parsed or embedded
    store = ingestor.index.store
    for corpus in (Corpus.PARAGRAPH, Corpus.DOCUMENT):
        assert store.source_hashes(corpus) == {source: {digest}}
    assert by_name(ingestor.ingest([notes])) == {"notes.txt": FileStatus.UNCHANGED}


def _no_media() -> object:
    raise AssertionError("nothing here needs a media analyser")


def test_a_run_after_a_killed_one_deletes_media_files_no_item_uses(
    store: Store, encoder: SentenceTransformerEncoder, tmp_path: Path
) -> None:
    media = MediaIngest(tmp_path / "media", image_analyzer=_no_media, video_analyzer=_no_media)
    ingestor = Ingestor(Index(store, encoder), media=media)
    thumbs = tmp_path / "media" / "thumbnails"
    thumbs.mkdir(parents=True)
    used, orphan = thumbs / "used.jpg", thumbs / "orphan.jpg"
    for f in (used, orphan):
        f.write_bytes(b"\xff\xd8 a jpeg")
    photo = Item(
        item_id("p"), Corpus.IMAGE, "a photo", "/photos/p.jpg", "v1", extra={"thumbnail": str(used)}
    )
    ingestor.index.add([photo])
    notes = tmp_path / "notes.txt"
    notes.write_text("Cats sleep for most of the day.", encoding="utf-8")
    ingestor.ingest([notes])
    assert orphan.exists()  # the last run finished: nothing to look for
    mark = tmp_path / "media" / UNFINISHED_MARK
    mark.touch()  # what a killed run leaves behind
    ingestor.ingest([notes])
    assert used.exists() and not orphan.exists() and not mark.exists()
