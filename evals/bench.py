"""Speed benchmarks (``mmrag bench ...``); their figures go to docs/benchmarks.md.

Timings use ``time.perf_counter`` around whole operations on this machine; models
are loaded before timing starts, so the figures are steady-state throughput.
"""

from __future__ import annotations

import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from evals.metrics import percentiles
from evals.retrieval import build_eval_index, corpus_items, load_text_data, open_eval_store
from retrieval.base import DEFAULT_WORKSPACE, Corpus


def _machine() -> dict[str, Any]:
    import os

    import torch

    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def bench_ingest(data: Path, console: Console | None = None) -> dict[str, Any]:
    """Raw embedding speed of the passages of ``data`` vs ingesting them, then re-ingest."""
    from app.service import Service
    from app.settings import Settings
    from ingest.document_items import document_items
    from ingest.loaders import load_file
    from ingest.roots import walk
    from retrieval.errors import MmragError

    with tempfile.TemporaryDirectory(prefix="mmrag-bench-") as tmp:
        service = Service(Settings(data_dir=Path(tmp)))
        ingestor = service.ingestor  # loads the encoder before any timing
        texts: list[str] = []
        start = time.perf_counter()
        for path in walk([data]):
            try:
                doc = load_file(path, ingestor.loaders)
                passages, _ = document_items(
                    "", "", doc, workspace=DEFAULT_WORKSPACE,
                    target_words=ingestor.target_words, max_words=ingestor.max_words,
                )  # fmt: skip
            except MmragError:
                continue
            texts += [p.embed_text or p.text for p in passages]
        parse_s = time.perf_counter() - start
        if console:
            console.print(f"[dim]{len(texts)} passages parsed in {parse_s:.1f} s; embedding...[/]")
        encoder = service.index.dense
        start = time.perf_counter()
        encoder.encode(texts)
        raw_s = time.perf_counter() - start
        if console:
            console.print(
                f"[dim]raw embedding {len(texts) / raw_s:.1f} passages/s; ingesting...[/]"
            )
        first = service.ingest([data])
        if console:
            console.print(f"[dim]first ingest {first.seconds:.1f} s; re-ingesting...[/]")
        again = service.ingest([data])
        service.close()
    return {
        "data": str(data),
        "files": len(first.files),
        "passages": first.embedded,
        "parse_chunk_seconds": round(parse_s, 2),
        "raw_embedding_seconds": round(raw_s, 2),
        "raw_embedding_passages_per_s": round(len(texts) / raw_s, 1),
        "ingest_seconds": round(first.seconds, 2),
        "ingest_passages_per_s": round(first.embedded / first.seconds, 1),
        "ingest_vs_raw": round((first.embedded / first.seconds) / (len(texts) / raw_s), 3),
        "reingest_unchanged_seconds": round(again.seconds, 3),
        "reingest_embedded": again.embedded,
        "reingest_speedup": round(first.seconds / again.seconds, 1),
        "machine": _machine(),
    }


def bench_retrieval(data: Path, repeat: int = 3, console: Console | None = None) -> dict[str, Any]:
    """Latency of one query against one corpus, query encoding included, per engine and mode.

    Both embedded engines hold the same items and vectors (embedded once): Qdrant Edge,
    the default, and qdrant-client's pure-Python local mode.
    """
    from retrieval.encoders import SentenceTransformerEncoder

    evaldata = load_text_data(data)
    items = corpus_items(evaldata)
    encoder = SentenceTransformerEncoder()
    vectors = encoder.encode([i.text for i in items])
    queries = [q for _, q in evaldata.queries]
    out: dict[str, Any] = {
        "data": str(data),
        "documents": len(evaldata.doc_ids),
        "queries": len(queries),
        "repeat": repeat,
        "limit": 10,
        "engines": {},
    }
    with tempfile.TemporaryDirectory(prefix="mmrag-bench-") as tmp:
        for engine in ("edge", "local"):
            index = build_eval_index(
                items, open_eval_store(engine, Path(tmp)), encoder=encoder, vectors=vectors
            )
            for q in queries[:5]:  # warm-up, untimed
                index.search(q, [Corpus.PARAGRAPH], limit=10)
            modes: dict[str, Any] = {}
            for mode in ("dense", "sparse", "hybrid"):
                latencies = []
                for _ in range(repeat):
                    for q in queries:
                        start = time.perf_counter()
                        index.search(q, [Corpus.PARAGRAPH], limit=10, mode=mode)
                        latencies.append((time.perf_counter() - start) * 1000)
                modes[mode] = {
                    **percentiles(latencies),
                    "mean": round(statistics.fmean(latencies), 3),
                }
                if console:
                    console.print(f"[dim]{engine} {mode}: {modes[mode]}[/]")
            out["engines"][engine] = modes
            index.store.close()
    encode = []
    for q in queries:
        start = time.perf_counter()
        encoder.encode([q], query=True)
        encode.append((time.perf_counter() - start) * 1000)
    out["query_encoding_ms"] = percentiles(encode)
    out["machine"] = _machine()
    return out


def bench_media(images: Path, videos: Path, console: Console | None = None) -> dict[str, Any]:
    """Images/s per stage (decode, CNN tags, OCR, the rest) and video seconds per wall
    second per stage (decode, scene cuts, keyframes, speech), models loaded first."""
    from ingest.images.decode import IMAGE_SUFFIXES, open_image
    from ingest.images.describe import CnnImageAnalyzer
    from ingest.video.analyzer import VIDEO_SUFFIXES, PyAVVideoAnalyzer
    from ingest.video.speech import SpeechRecognizer

    analyzer = CnnImageAnalyzer()
    speech = SpeechRecognizer()
    speech.load()
    image_files = sorted(p for p in images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    video_files = sorted(p for p in videos.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    analyzer.analyze([open_image(image_files[0])])  # warm-up, untimed
    decode = 0.0
    stages: dict[str, float] = {}
    for path in image_files:
        start = time.perf_counter()
        image = open_image(path)
        decode += time.perf_counter() - start
        analyzer.analyze([image], timings=stages)
    n = len(image_files)
    image_figures = {
        "images": n,
        "images_per_s": {
            "decode": round(n / decode, 1),
            **{k: round(n / v, 1) for k, v in stages.items() if v > 0},
            "total": round(n / (decode + sum(stages.values())), 2),
        },
    }
    if console:
        console.print(f"[dim]images: {image_figures}[/]")
    video_analyzer = PyAVVideoAnalyzer(speech)
    totals: dict[str, float] = {}
    media_seconds = 0.0
    per_video = []
    with tempfile.TemporaryDirectory(prefix="mmrag-bench-") as tmp:
        for path in video_files:
            analysis = video_analyzer.analyze(path, Path(tmp))
            media_seconds += analysis.duration
            for k, v in analysis.timings.items():
                totals[k] = totals.get(k, 0.0) + v
            per_video.append(
                {
                    "file": path.name,
                    "seconds": round(analysis.duration, 2),
                    "clips": len(analysis.clips),
                    "wall": round(analysis.timings.get("total", 0.0), 3),
                }
            )
    video_figures = {
        "videos": len(video_files),
        "video_seconds": round(media_seconds, 2),
        "video_seconds_per_wall_second": {
            k: round(media_seconds / v, 1) for k, v in totals.items() if v > 0
        },
        "per_video": per_video,
    }
    return {
        "images_data": str(images),
        "videos_data": str(videos),
        "image": image_figures,
        "video": video_figures,
        "machine": _machine(),
    }


def bench_ocr(data: Path, per_pdf: int = 2, console: Console | None = None) -> dict[str, Any]:
    """Scanned-page OCR: speed and how much of a page's real text it recovers.

    From each PDF under ``data``, ``per_pdf`` pages with a text layer of at least 100
    words (spread through the file) are rasterised at 200 dpi in greyscale, as a scanner
    would, and saved as an image-only PDF. The ingest path's ``MediaIngest.ocr_pages``
    then reads them back, and so does RapidOCR with its defaults on the same renders;
    their words are compared with the page's own text layer (word recall and precision,
    as multisets of lowercase letters-and-digits tokens).
    """
    import re
    from collections import Counter

    from ingest.images.describe import CnnImageAnalyzer
    from ingest.media import MediaIngest
    from ingest.pdf import PdfLoader
    from ingest.pdfium import render_page
    from ingest.video.analyzer import PyAVVideoAnalyzer

    def words(text: str) -> Counter[str]:
        return Counter(re.findall(r"[a-z0-9]+", text.lower()))

    pages: list[tuple[str, int, Any, str]] = []  # (file, page, scan, text layer)
    loader = PdfLoader()
    for pdf_path in sorted(data.rglob("*.pdf")):
        doc = loader.load(pdf_path)
        texted = [n for n, t in enumerate(doc.texts, 1) if len(t.split()) >= 100]
        chosen = [texted[int(i * len(texted) / per_pdf)] for i in range(per_pdf)] if texted else []
        for n in chosen:
            scan = render_page(pdf_path, n, dpi=200, grey=True)
            pages.append((pdf_path.name, n, scan, doc.page_text(n)))
    analyzer = CnnImageAnalyzer()
    media = MediaIngest(
        Path(tempfile.gettempdir()),
        image_analyzer=lambda: analyzer,
        video_analyzer=lambda: PyAVVideoAnalyzer(None),  # never called: no videos here
    )
    analyzer.read_text(pages[0][2])  # warm-up, untimed

    # mmrag's page OCR (page engine + respacing) against RapidOCR with its defaults (the
    # photo engine, no respacing) on the very same 200-dpi renders.
    def rapidocr_defaults(scanned: Path) -> str:
        image = render_page(scanned, 1)
        return analyzer.read_text(image) if image is not None else ""

    methods: dict[str, Any] = {
        "mmrag": lambda scanned: media.ocr_pages(scanned, [1]).get(1, ""),
        "rapidocr_defaults": rapidocr_defaults,
    }
    scores: dict[str, dict[str, list[float]]] = {
        m: {"recall": [], "precision": [], "seconds": []} for m in methods
    }
    with tempfile.TemporaryDirectory(prefix="mmrag-ocr-") as tmp:
        for name, n, scan, truth in pages:
            scanned = Path(tmp) / f"{name}-{n}.pdf"
            scan.save(scanned, resolution=200)
            want = words(truth)
            for method, read in methods.items():
                start = time.perf_counter()
                found = words(read(scanned))
                scores[method]["seconds"].append(time.perf_counter() - start)
                hit = sum((found & want).values())
                scores[method]["recall"].append(hit / max(1, sum(want.values())))
                scores[method]["precision"].append(hit / max(1, sum(found.values())))
            if console:
                line = ", ".join(f"{m} {scores[m]['recall'][-1]:.3f}" for m in methods)
                console.print(f"[dim]{name} p{n}: recall {line}[/]")

    def summary(x: dict[str, list[float]]) -> dict[str, Any]:
        return {
            "seconds_per_page": round(statistics.mean(x["seconds"]), 2),
            "word_recall": {
                "mean": round(statistics.mean(x["recall"]), 3),
                "median": round(statistics.median(x["recall"]), 3),
                "min": round(min(x["recall"]), 3),
            },
            "word_precision": {
                "mean": round(statistics.mean(x["precision"]), 3),
                "median": round(statistics.median(x["precision"]), 3),
            },
        }

    return {
        "data": str(data),
        "pages": len(pages),
        "dpi": 200,
        "methods": {m: summary(x) for m, x in scores.items()},
        "machine": _machine(),
    }
