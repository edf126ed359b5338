"""``mmrag eval all``: every evaluation and benchmark the README lists, on a fresh data
folder, each one's JSON, and one HTML page of them all (``index.html``).

Each step calls the function its own command calls (``app/cli_evals.py``) and writes the
same JSON its ``--json`` writes, under the file name docs/bench/ uses, so
``scripts/benchmarks.py`` renders docs/benchmarks.md from either folder. ``run.json``
records the run: the machine, and per step its equivalent command, its parameters, its
outcome (ok, failed with the error, skipped with the reason) and its time. The page is
made from the folder alone (:func:`write_page`), so it can be made again without running
anything.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import platform
import shlex
import subprocess
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from evals.base import Report
from retrieval.errors import MmragError

ROOT = Path(__file__).resolve().parents[1]
RUN_FILE = "run.json"
PAGE_FILE = "index.html"
# Where the README's commands differ from what `eval all` runs, and why: the budget is
# 45 minutes on the project's 2 cores (docs/evaluation.md has the measured times).
CRASH_TRIALS = 6
OCR_PAGES_PER_PDF = 1


@dataclass(frozen=True)
class Step:
    """One evaluation or benchmark of ``eval all``."""

    key: str  # for --only: "eval-text"
    args: tuple[str, ...]  # the command after ``mmrag``, without --json
    file: str  # its JSON, named as in docs/bench/
    make: Callable[[], Report]
    needs: tuple[Path, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    reduced: str = ""  # how and why the parameters differ from the README's command
    notes: tuple[str, ...] = ()  # e.g. a backend skipped for want of a server

    @property
    def name(self) -> str:
        return " ".join(self.args[:2])


def _openai_server(settings: Any) -> str | None:
    """None when an OpenAI-compatible server answers at the configured URL, else why not."""
    import httpx

    url = settings.openai_base_url.rstrip("/") + "/models"
    try:
        httpx.get(url, timeout=3, headers={"Authorization": f"Bearer {settings.openai_api_key}"})
    except httpx.HTTPError as e:
        return (
            f"backend openai skipped: no OpenAI-compatible server answered at {url} "
            f"({type(e).__name__}); start one with scripts/vllm_cpu.sh start"
        )
    return None


def steps(data: Path, work: Path, *, openai: str | None = None) -> list[Step]:
    """The README's evaluations in its order, on ``data`` (the shared eval folder).

    ``openai`` is why the openai backend of ``eval grounding`` cannot run (None: it can).
    """
    from evals.crash import crash_report
    from evals.documents import documents_report
    from evals.grounding import grounding_report
    from evals.images import images_report
    from evals.injection import injection_report
    from evals.mixed import mixed_report
    from evals.retrieval import text_report
    from evals.router import router_report

    def bench(run: Callable[..., Mapping[str, Any]], *a: Any, **kw: Any) -> Callable[[], Report]:
        return lambda: Report.of_figures(run(*a, **kw))

    from evals import bench as b

    cranfield = data / "text" / "cranfield"
    fb = data / "documents" / "financebench"
    router_data, phrasings = (
        data / "router" / "train.jsonl",
        ROOT / "scripts/router_phrasings.jsonl",
    )
    rgb = data / "grounding" / "rgb_fact.jsonl"
    backends = ["llamacpp"] if openai else ["llamacpp", "openai"]
    return [
        Step(
            "eval-text", ("eval", "text", "--data", str(cranfield)), "cranfield-eval.json",
            lambda: text_report(cranfield), (cranfield,),
        ),
        Step(
            "bench-ingest", ("bench", "ingest", "--data", str(fb / "pdfs")),
            "financebench-ingest.json", bench(b.bench_ingest, fb / "pdfs"), (fb / "pdfs",),
        ),
        Step(
            "bench-retrieval", ("bench", "retrieval", "--data", str(cranfield)),
            "cranfield-latency.json", bench(b.bench_retrieval, cranfield, repeat=3), (cranfield,),
            {"repeat": 3},
        ),
        Step(
            "eval-images", ("eval", "images", "--data", str(data / "images" / "coco")),
            "coco-images.json", lambda: images_report(data / "images" / "coco"),
            (data / "images" / "coco",),
        ),
        Step(
            "eval-router",
            ("eval", "router", "--data", str(router_data), "--cv", "5", "--extra", str(phrasings)),
            "router.json",
            lambda: router_report(
                router_data, cv=5, seed=0, baseline_train=router_data, extra=phrasings,
                llm_sample=60,
            ),
            (router_data, phrasings), {"cv": 5, "seed": 0, "llm_sample": 60},
        ),
        Step(
            "bench-media",
            ("bench", "media", "--images", str(data / "images"), "--videos", str(data / "video")),
            "media.json", bench(b.bench_media, data / "images", data / "video"),
            (data / "images", data / "video"),
        ),
        Step(
            "bench-ocr",
            ("bench", "ocr", "--data", str(fb), "--per-pdf", str(OCR_PAGES_PER_PDF)), "ocr.json",
            bench(b.bench_ocr, fb, per_pdf=OCR_PAGES_PER_PDF), (fb,),
            {"per_pdf": OCR_PAGES_PER_PDF},
            f"{OCR_PAGES_PER_PDF} page per filing instead of 2: a page takes ~10 s per method",
        ),
        Step(
            "bench-crash",
            ("bench", "crash", "--trials", str(CRASH_TRIALS), "--seed", "0", "--data", str(data),
             "--work", str(work / "crash")),
            "crash.json",
            lambda: crash_report(data, trials=CRASH_TRIALS, seed=0, work=work / "crash"),
            (data / "documents" / "financebench" / "pdfs", data / "video"),
            {"trials": CRASH_TRIALS, "seed": 0},
            f"{CRASH_TRIALS} trials instead of 24: a trial is two ingests in fresh processes "
            "(~45 s on a quiet machine)",
        ),
        Step(
            "eval-grounding",
            ("eval", "grounding", "--data", str(rgb), *(f"--backend={x}" for x in backends)),
            "grounding.json", lambda: grounding_report(rgb, backends), (rgb,),
            {"backends": backends}, notes=(openai,) if openai else (),
        ),
        Step(
            "eval-documents",
            ("eval", "documents", "--data", str(fb), "--store", str(work / "documents")),
            "documents.json", lambda: documents_report(fb, work / "documents"), (fb,),
        ),
        Step(
            "eval-mixed", ("eval", "mixed", "--data", str(data / "mixed")), "mixed.json",
            lambda: mixed_report(data / "mixed"), (data / "mixed",),
            {"modes": "routed,all,oracle"},
        ),
        Step(
            "eval-injection", ("eval", "injection",), "injection-0.5b.json",
            lambda: injection_report(None),
        ),
    ]  # fmt: skip


def machine() -> dict[str, Any]:
    """What the figures were measured on, and with which code."""
    import importlib.metadata

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    try:
        version = importlib.metadata.version("mmrag")
    except importlib.metadata.PackageNotFoundError:
        version = "not installed"

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(ram, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "mmrag": version,
        "commit": (commit[:12] + (" (uncommitted changes)" if dirty else "")) or "unknown",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "system": f"{platform.system()} {platform.release()}",
    }


def _load() -> float:
    return round(os.getloadavg()[0], 2)


@contextmanager
def fresh_data_dir(folder: Path) -> Iterator[None]:
    """Every ``Settings()`` made inside uses ``folder`` as its data folder (the evals read
    the environment), so no step touches the configured index; restored afterwards."""
    old = os.environ.get("MMRAG_DATA_DIR")
    os.environ["MMRAG_DATA_DIR"] = str(folder)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MMRAG_DATA_DIR", None)
        else:
            os.environ["MMRAG_DATA_DIR"] = old


def run_all(
    data: Path,
    out: Path,
    *,
    work: Path,
    only: Sequence[str] = (),
    console: Console | None = None,
) -> bool:
    """Run the steps into ``out`` (their JSON, ``run.json``, the page); True if one failed.

    A step whose input is missing is skipped with the reason; one that raises or reports
    a failure is recorded with its error, and the next step runs. ``run.json`` is written
    after every step, so an interrupted run still leaves a page to make.
    """
    from app.settings import Settings

    if work.exists() and any(work.iterdir()):
        raise MmragError(f"--work {work} is not empty: eval all runs on a fresh data folder")
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    data_dir = work / "data"
    with fresh_data_dir(data_dir):
        chosen = steps(data, work, openai=_openai_server(Settings()))
    unknown = sorted(set(only) - {s.key for s in chosen})
    if unknown:
        raise MmragError(
            f"unknown step {', '.join(unknown)} (one of {', '.join(s.key for s in chosen)})"
        )
    chosen = [s for s in chosen if not only or s.key in only]
    run: dict[str, Any] = {
        "data": str(data),
        "work": str(work),
        "data_dir": str(data_dir),
        "machine": machine(),
        "load_start": list(os.getloadavg()),
        "steps": [],
    }
    began = time.perf_counter()
    for number, step in enumerate(chosen, 1):
        command = f"MMRAG_DATA_DIR={shlex.quote(str(data_dir))} mmrag " + shlex.join(
            [*step.args, "--json", str(out / step.file)]
        )
        record: dict[str, Any] = {
            "key": step.key,
            "name": step.name,
            "command": command,
            "params": dict(step.params),
            "reduced": step.reduced,
            "notes": list(step.notes),
            "json": step.file,
            "load_start": _load(),
        }
        if console:
            elapsed = _clock(time.perf_counter() - began)
            console.rule(f"[bold][{number}/{len(chosen)}] {step.name}[/] (elapsed {elapsed})")
            console.print(f"[dim]{command}[/]")
        start = time.perf_counter()
        missing = [p for p in step.needs if not p.exists()]
        if missing:
            record.update(status="skipped", reason=f"missing {', '.join(map(str, missing))}")
        else:
            try:
                with fresh_data_dir(data_dir):
                    report = step.make()
                (out / step.file).write_text(report.saved())
                record["status"] = "failed" if report.failed else "ok"
                if report.failed:
                    record["error"] = "the run reported a failure (its JSON has the details)"
            except Exception as e:  # a failed step is reported on the page; the rest run
                record.update(
                    status="failed",
                    error=f"{type(e).__name__}: {e}",
                    traceback=traceback.format_exc(limit=-8),
                )
            gc.collect()
        record["seconds"] = round(time.perf_counter() - start, 1)
        record["load_end"] = _load()
        run["steps"].append(record)
        run["seconds"] = round(time.perf_counter() - began, 1)
        (out / RUN_FILE).write_text(json.dumps(run, indent=2))
        if console:
            colour = {"ok": "green", "failed": "red", "skipped": "yellow"}[record["status"]]
            why = record.get("reason") or record.get("error") or ""
            console.print(
                f"[{colour}]{record['status']}[/] {step.name} in {record['seconds']:.0f} s "
                f"(elapsed {_clock(run['seconds'])}, load {record['load_end']}) {why}"
            )
    run["load_end"] = list(os.getloadavg())
    (out / RUN_FILE).write_text(json.dumps(run, indent=2))
    page = write_page(out)
    if console:
        console.print(f"[bold]{len(chosen)} steps in {_clock(run['seconds'])}[/]; page: {page}")
    return any(s["status"] == "failed" for s in run["steps"])


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


# The page ------------------------------------------------------------------------------


@dataclass(frozen=True)
class HtmlTable:
    """A table as the page shows it: a title, a header, rows of text."""

    title: str
    header: list[str]
    rows: list[list[str]]
    numeric: list[bool] = field(default_factory=list)  # right-aligned columns


def _plain(cell: Any) -> str:
    if isinstance(cell, Text):
        return cell.plain
    if isinstance(cell, str):
        return Text.from_markup(cell).plain
    return str(cell)


def from_rich(renderable: Any) -> list[HtmlTable]:
    """The tables of what a command shows in the terminal (a rich Table or a Group)."""
    if isinstance(renderable, Group):
        return [t for r in renderable.renderables for t in from_rich(r)]
    if not isinstance(renderable, Table):
        return []
    columns = renderable.columns
    rows = [list(r) for r in zip(*([_plain(c) for c in col.cells] for col in columns), strict=True)]
    return [
        HtmlTable(
            _plain(renderable.title or ""),
            [_plain(c.header) for c in columns],
            rows,
            [c.justify == "right" for c in columns],
        )
    ]


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _rows(title: str, header: list[str], rows: list[list[Any]]) -> HtmlTable:
    return HtmlTable(
        title, header, [[_num(v) for v in r] for r in rows], [i > 0 for i in range(len(header))]
    )


def _router_tables(f: Mapping[str, Any]) -> list[HtmlTable]:
    methods = f["methods"]
    summary = _rows(
        f"Router on {f['data']} ({f['mode']}, {f['n']} questions)",
        ["method", "questions", "accuracy", "macro-F1", "p50 ms", "p95 ms"],
        [
            [name, m["metrics"]["n"], m["metrics"]["accuracy"], m["metrics"]["macro_f1"],
             m["latency"]["p50_ms"], m["latency"]["p95_ms"]]
            for name, m in methods.items()
        ],
    )  # fmt: skip
    out = [summary]
    for name, m in methods.items():
        labels = m["metrics"]["labels"]
        out.append(
            _rows(
                f"{name}: true label (rows) x chosen (columns)",
                ["", *labels],
                [
                    [label, *row]
                    for label, row in zip(labels, m["metrics"]["confusion"], strict=True)
                ],
            )
        )
    return out


def _bench_tables(key: str, f: Mapping[str, Any]) -> list[HtmlTable]:
    """The benches show their figures as JSON in the terminal; here, as tables."""
    if key == "bench-ingest":
        return [
            _rows(
                f"Ingest of {f['data']}: {f['files']} files, {f['passages']} passages",
                ["what", "value"],
                [
                    ["parse + chunk (s)", f["parse_chunk_seconds"]],
                    ["raw embedding (s)", f["raw_embedding_seconds"]],
                    ["raw embedding (passages/s)", f["raw_embedding_passages_per_s"]],
                    ["first ingest, end to end (s)", f["ingest_seconds"]],
                    ["first ingest (passages/s)", f["ingest_passages_per_s"]],
                    ["ingest speed / raw embedding speed", f["ingest_vs_raw"]],
                    ["re-ingest of the unchanged folder (s)", f["reingest_unchanged_seconds"]],
                    ["re-ingest speed-up", f["reingest_speedup"]],
                ],
            )
        ]
    if key == "bench-retrieval":
        rows = [
            [engine, mode, m["p50"], m["p95"], m["mean"]]
            for engine, modes in f["engines"].items()
            for mode, m in modes.items()
        ]
        q = f["query_encoding_ms"]
        rows.append(["(query encoding alone)", "", q["p50"], q["p95"], None])
        title = f"One query, top {f['limit']}, {f['queries']} queries x {f['repeat']} (ms)"
        return [_rows(title, ["engine", "mode", "p50", "p95", "mean"], rows)]
    if key == "bench-media":
        image, video = f["image"], f["video"]
        return [
            _rows(
                f"{image['images']} images, one at a time",
                ["image stage", "images/s"],
                [[k, v] for k, v in image["images_per_s"].items()],
            ),
            _rows(
                f"{video['videos']} videos, {video['video_seconds']} s of video",
                ["video stage", "video seconds per wall second"],
                [[k, v] for k, v in video["video_seconds_per_wall_second"].items()],
            ),
        ]
    if key == "bench-ocr":
        return [
            _rows(
                f"{f['pages']} scanned pages at {f['dpi']} dpi",
                ["page OCR", "recall mean", "median", "min", "precision mean", "s/page"],
                [
                    [name, m["word_recall"]["mean"], m["word_recall"]["median"],
                     m["word_recall"]["min"], m["word_precision"]["mean"], m["seconds_per_page"]]
                    for name, m in f["methods"].items()
                ],
            )
        ]  # fmt: skip
    if key == "bench-crash":
        stages = [[k, *v.values()] for k, v in f["stages"].items() if " " not in k]
        stages.append(["all", f["trials"], f["killed"], f["corruptions"], f["losses"]])
        return [
            _rows(
                f"{f['trials']} trials (seed {f['seed']}); a clean run: {f['prepare_seconds']} s "
                f"for three, a trial {f['trial_seconds_mean']} s on average",
                ["stage", "trials", "killed", "corruptions", "losses"],
                stages,
            )
        ]
    return []


# The commands whose terminal table is made from their JSON alone.
OWN_TABLES = {
    "eval-text": ("evals.retrieval", "text_table"),
    "eval-images": ("evals.images", "image_table"),
    "eval-grounding": ("evals.grounding", "grounding_table"),
    "eval-documents": ("evals.documents", "documents_table"),
    "eval-mixed": ("evals.mixed", "mixed_table"),
    "eval-injection": ("evals.injection", "injection_table"),
}


def tables(key: str, figures: Mapping[str, Any]) -> list[HtmlTable]:
    """What the page shows of a step's JSON: the command's own table where it is made
    from the JSON, the same figures as a table for the router and the benches."""
    if key.startswith("bench-"):
        return _bench_tables(key, figures)
    if key == "eval-router":
        return _router_tables(figures)
    if key not in OWN_TABLES:
        return []
    module, name = OWN_TABLES[key]
    return from_rich(getattr(importlib.import_module(module), name)(figures))


def write_page(out: Path) -> Path:
    """``out/index.html`` from ``out/run.json`` and the steps' JSON, plots beside it."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    from evals.plots import write_plots

    if not (out / RUN_FILE).is_file():
        raise MmragError(f"no {RUN_FILE} in {out}: run mmrag eval all --out {out} first")
    run = json.loads((out / RUN_FILE).read_text())
    figures: dict[str, Any] = {}
    for step in run["steps"]:
        path = out / step["json"]
        if step["status"] != "skipped" and path.is_file():
            figures[step["json"]] = json.loads(path.read_text())
    plots = write_plots(figures, out)
    sections = []
    for step in run["steps"]:
        f = figures.get(step["json"])
        try:
            shown = tables(step["key"], f) if f is not None else []
            table_error = ""
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            shown, table_error = [], f"{type(e).__name__}: {e}"
        sections.append(
            {
                **step,
                "tables": shown,
                "table_error": table_error,
                "plots": [p for p in plots if p.inputs[0] == step["json"]],
            }
        )
    env = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    page = env.get_template("report.html.j2").render(
        run=run,
        sections=sections,
        counts={
            s: sum(x["status"] == s for x in run["steps"]) for s in ("ok", "failed", "skipped")
        },
        clock=_clock,
        param=lambda v: ",".join(map(str, v)) if isinstance(v, list) else v,
    )
    path = out / PAGE_FILE
    path.write_text(page, encoding="utf-8")
    return path
