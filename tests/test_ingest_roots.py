"""Ingestion reads nothing outside the folders it is given (issue 10, items 2 and 3).

A Markdown page's picture references and a folder's symlinks are how a folder would
reach the rest of the disk. The outside files here hold a secret; after ingesting, a
real server (uvicorn on 127.0.0.1, the real app, MiniLM, the CNN and OCR, the 0.5B
LLM) is asked for it over HTTP and must give nothing back, while references and links
that stay inside still work.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageDraw, ImageFont

from app.api import create_app
from app.service import Service
from generation.llamacpp import LlamaCppGenerator
from ingest.base import FileResult, FileStatus
from ingest.images.describe import CnnImageAnalyzer
from ingest.pipeline import Ingestor
from ingest.roots import Roots
from retrieval.base import Corpus, Store
from retrieval.encoders import SentenceTransformerEncoder
from retrieval.errors import OutsideRootError
from retrieval.index import Index
from tests.helpers import make_service, serve_in_thread

SECRET = "90210"  # on the outside picture and in the outside text file


def sign(path: Path, text: str) -> Path:
    """A picture of ``text`` in letters OCR reads."""
    image = Image.new("RGB", (640, 240), "white")
    font = ImageFont.load_default(size=64)
    ImageDraw.Draw(image).text((30, 80), text, fill="black", font=font)
    image.save(path)
    return path


@pytest.fixture(scope="module")
def analyzer() -> CnnImageAnalyzer:
    return CnnImageAnalyzer()


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An ingested folder and, beside it, files it must not reach."""
    root = tmp_path_factory.mktemp("roots")
    outside = root / "outside"
    (outside / "dir").mkdir(parents=True)
    secret_png = sign(outside / "secret.png", f"VAULT {SECRET}")
    passwd = outside / "passwd.txt"
    passwd.write_text(f"root:x:0:0 the zebra password is {SECRET}\n", encoding="utf-8")
    (outside / "dir" / "other.txt").write_text(f"Code {SECRET} again.\n", encoding="utf-8")

    folder = root / "folder"
    (folder / "pics").mkdir(parents=True)
    (folder / "docs").mkdir()
    (folder / "sub").mkdir()
    sign(folder / "pics" / "receipt.png", "INVOICE 4711")
    (folder / "notes.md").write_text(
        "# Shed notes\n\nThe garden shed holds the hedge trimmer and the ladder.\n\n"
        "![Hotel receipt](pics/receipt.png)\n\n"
        f"![a](<{secret_png}>)\n\n"  # absolute
        "![b](../outside/secret.png)\n\n"  # up and out
        "![d](../outside/no-such-file.png)\n\n"  # outside and missing: the same warning
        "![e](pics/missing.png)\n",  # inside and missing: says so
        encoding="utf-8",
    )
    (folder / "page.html").write_text(
        "<html><body><h1>Receipts</h1><p>The March receipts, scanned.</p>"
        '<img src="pics/receipt.png" alt="Receipt">'
        f'<img src="file://{secret_png}" alt="c"><img src="{secret_png}" alt="f">'
        "</body></html>",
        encoding="utf-8",
    )
    (folder / "docs" / "heron.txt").write_text(
        "The grey heron nests by the river every spring.\n", encoding="utf-8"
    )
    (folder / "passwd.txt").symlink_to(passwd)  # a file outside
    (folder / "alias.txt").symlink_to(folder / "docs" / "heron.txt")  # inside: fine
    (folder / "outdir").symlink_to(outside / "dir", target_is_directory=True)
    (folder / "sub" / "hop.txt").symlink_to(Path("../../outside/passwd.txt"))
    (folder / "chain.txt").symlink_to(Path("sub/hop.txt"))  # a link to a link out
    (folder / "loop.txt").symlink_to(folder / "loop.txt")
    return {
        "folder": folder,
        "secret_png": secret_png,
        "passwd": passwd,
        "notes": folder / "notes.md",
        "page": folder / "page.html",
        "heron": folder / "docs" / "heron.txt",
    }


@pytest.fixture(scope="module")
def ingested(
    tmp_path_factory: pytest.TempPathFactory,
    encoder: SentenceTransformerEncoder,
    llm: LlamaCppGenerator,
    analyzer: CnnImageAnalyzer,
    layout: dict[str, Path],
) -> Iterator[tuple[Service, dict[str, FileResult]]]:
    svc = make_service(
        tmp_path_factory.mktemp("roots-svc"), encoder, llm, analyzer, rate_limit_per_minute=0
    )
    report = svc.ingest([layout["folder"]])
    yield svc, {Path(f.path).name: f for f in report.files}
    svc.close()


@pytest.fixture(scope="module")
def server(ingested: tuple[Service, dict[str, FileResult]]) -> Iterator[httpx.Client]:
    with (
        serve_in_thread(create_app(ingested[0])) as url,
        httpx.Client(base_url=url, timeout=120) as client,
    ):
        yield client


def everything_stored(svc: Service) -> str:
    """Every item's text and payload, as one string to search for the secret in."""
    return "\n".join(
        f"{i.source} {i.text} {i.extra}"
        for c in Corpus
        if svc.store.exists(c)
        for i in svc.store.items_of(c)
    )


def test_links_out_of_the_folder_are_skipped_with_a_reason(
    ingested: tuple[Service, dict[str, FileResult]], layout: dict[str, Path]
) -> None:
    svc, files = ingested
    for name in ("passwd.txt", "outdir", "chain.txt", "hop.txt", "loop.txt"):
        assert files[name].status is FileStatus.SKIPPED, files[name]
        assert "links outside the folders being ingested" in files[name].message
    # A link inside the folder leads to a file that is ingested once, under its own path.
    assert files["heron.txt"].status is FileStatus.ADDED
    assert files["heron.txt"].path == str(layout["heron"].resolve())
    assert files["alias.txt"].status is FileStatus.SKIPPED
    assert "which is ingested once" in files["alias.txt"].message
    assert SECRET not in everything_stored(svc)


def test_picture_references_out_of_the_folder_are_refused_alike(
    ingested: tuple[Service, dict[str, FileResult]], layout: dict[str, Path]
) -> None:
    svc, files = ingested
    notes, page = files["notes.md"], files["page.html"]
    assert notes.status is page.status is FileStatus.ADDED
    refused = [
        w for w in notes.warnings + page.warnings if "outside the folders being ingested" in w
    ]
    assert len(refused) == 5, (notes.warnings, page.warnings)
    # The same words whether the target exists (secret.png) or not: nothing to probe with.
    assert len({w.split("'")[-1] for w in refused}) == 1
    assert any("missing.png" in w and "outside" not in w for w in notes.warnings)
    # Only the picture inside the folder became an item of each page.
    for document in (layout["notes"], layout["page"]):
        (picture,) = svc.store.items_of(Corpus.IMAGE, str(document.resolve()))
        assert picture.extra["file"] == str((layout["folder"] / "pics" / "receipt.png").resolve())
        assert "4711" in picture.extra["ocr"]
    assert SECRET not in everything_stored(svc)


def test_the_server_gives_back_nothing_from_outside(
    server: httpx.Client, ingested: tuple[Service, dict[str, FileResult]], layout: dict[str, Path]
) -> None:
    svc = ingested[0]
    for path in (layout["passwd"], layout["folder"] / "passwd.txt", layout["secret_png"]):
        r = server.get("/api/v1/media", params={"path": str(path)})
        assert r.status_code == 404, (path, r.text)
    for question in ("What is the zebra password?", "What is the vault code on the sign?"):
        r = server.post(
            "/api/v1/ask",
            json={"question": question, "corpora": ["paragraph", "document", "image"]},
        )
        assert r.status_code == 200, r.text
        assert SECRET not in r.text
    # What is inside is served: the heron note, and the receipt's thumbnail.
    heron = server.get("/api/v1/media", params={"path": str(layout["heron"].resolve())})
    assert heron.status_code == 200 and heron.text.startswith("The grey heron")
    (picture,) = svc.store.items_of(Corpus.IMAGE, str(layout["notes"].resolve()))
    thumbnail = server.get("/api/v1/media", params={"path": picture.extra["thumbnail"]})
    assert thumbnail.status_code == 200
    assert thumbnail.headers["content-type"] == "image/jpeg"


def test_a_file_swapped_for_a_link_after_the_walk_is_not_read(
    store: Store, encoder: SentenceTransformerEncoder, tmp_path: Path
) -> None:
    """The walk lists the folder first; a file replaced by a link before it is read is
    caught by the check made again right before reading."""
    outside = tmp_path / "outside.txt"
    outside.write_text(f"The vault code is {SECRET}.\n", encoding="utf-8")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.txt").write_text("Apples ripen in autumn.\n", encoding="utf-8")
    swapped = folder / "b.txt"
    swapped.write_text("Bees visit the clover.\n", encoding="utf-8")

    def swap(result: FileResult) -> None:
        if Path(result.path).name == "a.txt":
            swapped.unlink()
            swapped.symlink_to(outside)

    ingestor = Ingestor(Index(store, encoder), batch_size=1)  # a.txt is reported before b
    report = ingestor.ingest([folder], progress=swap)
    status = {Path(f.path).name: f.status for f in report.files}
    assert status == {"a.txt": FileStatus.ADDED, "b.txt": FileStatus.SKIPPED}
    texts = " ".join(i.text for c in Corpus if store.exists(c) for i in store.items_of(c))
    assert "Apples" in texts and SECRET not in texts


def test_roots_of_named_files_and_folders(tmp_path: Path) -> None:
    folder, elsewhere = tmp_path / "folder", tmp_path / "elsewhere"
    (folder / "sub").mkdir(parents=True)
    elsewhere.mkdir()
    named = folder / "sub" / "page.md"
    named.write_text("# Page\n", encoding="utf-8")
    roots = Roots.of([named])  # a file named directly: the folder holding it
    assert roots.folders == ((folder / "sub").resolve(),)
    assert roots.confine(folder / "sub" / "pic.png") == (folder / "sub" / "pic.png").resolve()
    with pytest.raises(OutsideRootError, match="links outside"):
        roots.confine(folder / "sub" / ".." / "secret.png")
    linked = tmp_path / "via-link"
    linked.symlink_to(folder, target_is_directory=True)
    # A named link to a folder is followed: the operator chose it.
    assert Roots.of([linked]).holds(folder / "sub" / "page.md")
    assert not Roots.of([linked]).holds(elsewhere)
    assert not Roots.of([folder]).holds(Path(os.devnull))
