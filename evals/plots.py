"""The plots of ``mmrag eval all``'s page and of docs/benchmarks.md, from the steps' JSON.

Drawn with matplotlib's object API (``Figure``, rendered by Agg): no pyplot, no global
state, no display needed. Each plot names the JSON files it reads (as docs/bench/ names
them); one whose first file is absent is not drawn, and one that cannot read its file
says why instead of stopping the page.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Figures = Mapping[str, Any]


@dataclass(frozen=True)
class Plot:
    """One PNG: its file, the JSON files it reads (the first is required), a caption."""

    file: str
    inputs: tuple[str, ...]
    caption: str
    draw: Callable[[Figure, Sequence[Figures | None]], None]
    size: tuple[float, float] = (8, 4.8)  # inches


@dataclass(frozen=True)
class Drawn:
    """A plot as written: its file (relative to the folder), or why it is missing."""

    file: str
    inputs: tuple[str, ...]
    caption: str
    error: str = ""


def _confusion(fig: Figure, inputs: Sequence[Figures | None]) -> None:
    (router,) = inputs
    assert router is not None
    metrics = router["methods"]["trained"]["metrics"]
    labels, counts = metrics["labels"], metrics["confusion"]
    shares = [[c / max(1, sum(row)) for c in row] for row in counts]
    ax = fig.subplots()
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=30)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("chosen (top label)")
    ax.set_ylabel("true label")
    for i, row in enumerate(counts):
        for j, c in enumerate(row):
            colour = "white" if shares[i][j] > 0.5 else "black"
            ax.text(j, i, str(c), ha="center", va="center", color=colour, fontsize=9)
    ax.set_title(
        f"Trained router, {router['mode']} ({metrics['n']} questions, "
        f"accuracy {metrics['accuracy']:.3f})"
    )


def _mixed_success(fig: Figure, inputs: Sequence[Figures | None]) -> None:
    (mixed,) = inputs
    assert mixed is not None
    modes = list(mixed["modes"])
    first = mixed["modes"][modes[0]]
    kinds = [k for k, f in first["kinds"].items() if f["gold_questions"]]
    groups = [f"all ({first['overall']['gold_questions']})"] + [
        f"{k} ({first['kinds'][k]['gold_questions']})" for k in kinds
    ]
    ax = fig.subplots()
    width = 0.8 / len(modes)
    for n, mode in enumerate(modes):
        f = mixed["modes"][mode]
        values = [f["overall"]["success@5"]] + [f["kinds"][k]["success@5"] or 0 for k in kinds]
        xs = [g + (n - (len(modes) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, values, width, label=mode)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylim(0, 1.12)  # room for the legend above the bars
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_ylabel("success@5")
    ax.set_title("Routing on one mixed index: success@5 per mode and question kind")
    ax.legend(loc="upper left", ncols=len(modes))
    ax.grid(axis="y", alpha=0.3)


def _mixed_latency(fig: Figure, inputs: Sequence[Figures | None]) -> None:
    (mixed,) = inputs
    assert mixed is not None
    ax = fig.subplots()
    for mode in mixed["modes"]:
        ms = sorted(q["modes"][mode]["ms"] for q in mixed["questions"] if mode in q["modes"])
        shares = [(i + 1) / len(ms) for i in range(len(ms))]
        ax.step(ms, shares, where="post", label=f"{mode} (p50 {ms[len(ms) // 2]:.0f} ms)")
    ax.set_xscale("log")
    ax.set_xlabel("ms per question: route + retrieve + select (log scale)")
    ax.set_ylabel("share of questions at most this fast")
    ax.set_title(f"Routing on one mixed index: latency of {mixed['n']} questions per mode")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)


def _retrieval_latency(fig: Figure, inputs: Sequence[Figures | None]) -> None:
    (bench,) = inputs
    assert bench is not None
    rows = [
        (f"{engine} {mode}", m["p50"], m["p95"])
        for engine, modes in bench["engines"].items()
        for mode, m in modes.items()
    ]
    q = bench["query_encoding_ms"]
    rows.append(("query encoding alone", q["p50"], q["p95"]))
    ax = fig.subplots()
    ys = range(len(rows))
    ax.barh(ys, [r[2] for r in rows], color="#c6dbef", label="p95")
    ax.barh(ys, [r[1] for r in rows], color="#2171b5", label="p50")
    ax.set_yticks(ys, [r[0] for r in rows])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("ms per query, query encoding included (log scale)")
    ax.set_title(
        f"Retrieval latency: {bench['documents']} passages, "
        f"{bench['queries']} queries x {bench['repeat']}"
    )
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)


def _bars(ax: Axes, title: str, unit: str, values: Mapping[str, float]) -> None:
    from matplotlib.ticker import NullFormatter

    names = list(values)
    ax.barh(range(len(names)), [values[n] for n in names], color="#41ab5d")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(unit)
    ax.set_title(title, fontsize=10)
    for y, n in enumerate(names):
        ax.text(values[n], y, f" {values[n]:g}", va="center", fontsize=8)
    ax.grid(axis="x", alpha=0.3)


def _throughput(fig: Figure, inputs: Sequence[Figures | None]) -> None:
    ingest, media = inputs
    assert ingest is not None
    panels: list[tuple[str, str, dict[str, float]]] = [
        (
            f"documents: {ingest['files']} files, {ingest['passages']} passages",
            "passages/s (log scale)",
            {
                "parse + chunk": round(ingest["passages"] / ingest["parse_chunk_seconds"], 1),
                "raw embedding": ingest["raw_embedding_passages_per_s"],
                "ingest, end to end": ingest["ingest_passages_per_s"],
            },
        )
    ]
    if media is None:
        fig.set_size_inches(8, 3.2)
    else:
        panels.append(
            (
                f"images: {media['image']['images']}, one at a time",
                "images/s (log scale)",
                dict(media["image"]["images_per_s"]),
            )
        )
        panels.append(
            (
                f"videos: {media['video']['videos']}, {media['video']['video_seconds']} s",
                "video seconds per wall second (log scale)",
                dict(media["video"]["video_seconds_per_wall_second"]),
            )
        )
    axes = fig.subplots(len(panels), 1, squeeze=False)
    for ax, (title, unit, values) in zip(axes[:, 0], panels, strict=True):
        _bars(ax, title, unit, values)
    fig.suptitle("Ingest throughput by stage")


PLOTS = (
    Plot(
        "router-confusion.png",
        ("router.json",),
        "Trained router, cross-validated: questions per true label (rows) and chosen label "
        "(columns); shade is the share of the row.",
        _confusion,
        size=(6.4, 5.6),
    ),
    Plot(
        "mixed-success.png",
        ("mixed.json",),
        "success@5 per mode and question kind (questions with gold sources).",
        _mixed_success,
    ),
    Plot(
        "mixed-latency.png",
        ("mixed.json",),
        "Latency per question and mode, as a cumulative distribution.",
        _mixed_latency,
    ),
    Plot(
        "retrieval-latency.png",
        ("cranfield-latency.json",),
        "Retrieval latency per engine and mode: p50 (dark) and p95 (light).",
        _retrieval_latency,
    ),
    Plot(
        "ingest-throughput.png",
        ("financebench-ingest.json", "media.json"),
        "Ingest throughput by stage: documents (bench ingest), images and video (bench media).",
        _throughput,
        size=(8, 8),
    ),
)


def write_plots(figures: Mapping[str, Figures], folder: Path) -> list[Drawn]:
    """Draw every plot whose first input is in ``figures`` (by file name) into ``folder``."""
    from matplotlib.figure import Figure

    folder.mkdir(parents=True, exist_ok=True)
    drawn = []
    for plot in PLOTS:
        if plot.inputs[0] not in figures:
            continue
        fig = Figure(figsize=plot.size, layout="constrained")
        try:
            plot.draw(fig, [figures.get(i) for i in plot.inputs])
            # No Software/date metadata: the same JSON draws the same bytes.
            fig.savefig(folder / plot.file, format="png", dpi=100, metadata={"Software": None})
            drawn.append(Drawn(plot.file, plot.inputs, plot.caption))
        except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError) as e:
            (folder / plot.file).unlink(missing_ok=True)
            drawn.append(Drawn(plot.file, plot.inputs, plot.caption, f"{type(e).__name__}: {e}"))
    return drawn
