"""Build the hostile files of issue 10 and measure what ingesting each one costs.

    python scripts/hostile_files.py build DIR           # write the files into DIR
    python scripts/hostile_files.py measure FILE...     # ingest each in its own process
    python scripts/hostile_files.py weigh FILE          # load, chunk, BM25 in this process

``build`` writes the three files seen in issue 10 (a DOCX of ~300 KB unpacking to 100 MB
of XML, a PDF of 5,000 blank pages, 50 MB of text on one line), the same three just
under the default limits (30 MB of XML, 1,999 pages, 19 M characters), and a good small
text file that measures the cost of starting up and loading the models.

``measure`` runs ``mmrag ingest FILE`` (the code first on ``sys.path``: run it from the
checkout to measure) once per file, each in a fresh child process with a fresh data
folder, and prints its wall time, peak RSS (``ru_maxrss`` from ``os.wait4``), exit code
and the CLI's last lines as JSON. ``weigh`` does in-process what ingest does to a file
before embedding (load, chunk, the document's BM25 vector) and prints its time and the
process's peak RSS: embedding 18,000 passages of a giant line takes ten minutes here and
measures the encoder, not the file. The figures go to docs/benchmarks.md ("Hostile
files").
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

DOCX_XML_MB = 100
BLANK_PAGES = 5000
ONE_LINE_MB = 50


def docx_bomb(path: Path, xml_mb: int = DOCX_XML_MB) -> Path:
    """A small DOCX whose word/document.xml unpacks to ``xml_mb`` MB of paragraphs."""
    from docx import Document

    buffer = io.BytesIO()
    Document().save(buffer)
    paragraph = (
        b"<w:p><w:r><w:t>The quarterly report restates revenue for every region "
        b"and every product line once more.</w:t></w:r></w:p>"
    )
    count = xml_mb * 1_000_000 // len(paragraph)
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(path, "w") as out:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "word/document.xml":
                head, _, tail = data.partition(b"<w:body>")
                body = b"<w:body>" + paragraph * count
                out.writestr(info, head + body + tail, zipfile.ZIP_DEFLATED, 9)
            else:
                out.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return path


def blank_pages_pdf(path: Path, pages: int = BLANK_PAGES) -> Path:
    """A PDF of ``pages`` empty Letter pages: no text layer, nothing drawn."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument.new()
    for _ in range(pages):
        pdf.new_page(612, 792).close()
    pdf.save(str(path))
    pdf.close()
    return path


def one_line_text(path: Path, mb: int = ONE_LINE_MB) -> Path:
    """``mb`` MB of words on a single line, no sentence ends, no newline."""
    words = b"alpha beta gamma delta epsilon zeta eta theta iota kappa "
    path.write_bytes((words * (mb * 1_000_000 // len(words) + 1))[: mb * 1_000_000])
    return path


def build(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    good = folder / "good.txt"
    good.write_text("The pump keeps the pressure at four bar.\n", encoding="utf-8")
    return [
        good,
        docx_bomb(folder / "bomb.docx"),
        blank_pages_pdf(folder / "blank.pdf"),
        one_line_text(folder / "oneline.txt"),
        docx_bomb(folder / "bomb-30mb.docx", 30),
        blank_pages_pdf(folder / "blank-1999.pdf", 1999),
        one_line_text(folder / "oneline-19mb.txt", 19),
    ]


def measure(path: Path, timeout: float = 1800.0) -> dict[str, object]:
    """Ingest ``path`` with the CLI in a fresh child process; its time and peak RSS."""
    with tempfile.TemporaryDirectory(prefix="mmrag-hostile-") as data:
        log = Path(data) / "out.log"
        env = {**os.environ, "MMRAG_DATA_DIR": str(Path(data) / "data")}
        start = time.perf_counter()
        with log.open("w") as out:
            child = subprocess.Popen(
                [sys.executable, "-c", "from app.cli import main; main()", "ingest", str(path)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        timer = threading.Timer(timeout, child.kill)
        timer.start()
        # wait4 gives this child's own peak RSS (RUSAGE_CHILDREN would be the max of all).
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        timer.cancel()
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
    return {
        "file": path.name,
        "bytes": path.stat().st_size,
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "exit": os.waitstatus_to_exitcode(status),
        # "N files in X s": the ingest itself, without start-up and model loading.
        "ingest": next((line for line in lines if " files in " in line), ""),
        "output": [line for line in lines if line[:1].isalnum()][-3:],
    }


def weigh(path: Path) -> dict[str, object]:
    """Load, chunk and weigh (BM25) ``path`` here; time and this process's peak RSS."""
    import resource

    from ingest.base import loaders_by_suffix
    from ingest.chunking import chunk
    from ingest.loaders import default_loaders, load_file
    from retrieval.sparse import BM25Encoder

    sparse = BM25Encoder()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    doc = load_file(path, loaders_by_suffix(default_loaders()))
    passages = chunk(doc)
    sparse.encode(["\n\n".join(doc.texts)])
    return {
        "file": path.name,
        "passages": len(passages),
        "seconds": round(time.perf_counter() - start, 1),
        "start_rss_mb": round(before),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[0] not in ("build", "measure", "weigh"):
        raise SystemExit(__doc__)
    if argv[0] == "weigh":
        print(json.dumps(weigh(Path(argv[1]))))
        return
    if argv[0] == "build":
        for f in build(Path(argv[1])):
            print(f"{f}: {f.stat().st_size:,} bytes")
        return
    for f in argv[1:]:
        print(json.dumps(measure(Path(f))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
