"""docs/benchmarks.md from the evaluations' JSON: the template's prose and commands, the
figures of the files.

    python scripts/benchmarks.py docs/bench --out docs/benchmarks.md    # the published runs
    python scripts/benchmarks.py report/ --out docs/benchmarks.md       # an `mmrag eval all`

The template is ``docs/benchmarks.md.j2``. A figure is read from FOLDER/<name>.json, or,
for the files ``mmrag eval all`` does not write (comparisons measured once with other
settings, the 1.5B model, hostile files), from docs/bench/<name>.json. A report's
``run.json`` puts its machine, date and steps at the top; a section whose discussion
quotes the published run says so when the figures above it come from another. The plots
are drawn from the same figures into docs/bench/img/ (``--img``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "docs" / "bench"
TEMPLATE = ROOT / "docs" / "benchmarks.md.j2"
RUN_FILE = "run.json"


def load(folder: Path, bench: Path = BENCH) -> tuple[dict[str, Any], set[str]]:
    """Every figure file by name (without .json): the folder's, else docs/bench's; and the
    names whose figures differ from the published ones."""
    figures = {p.stem: json.loads(p.read_text()) for p in sorted(bench.glob("*.json"))}
    published = dict(figures)
    for path in sorted(folder.glob("*.json")):
        if path.name != RUN_FILE:
            figures[path.stem] = json.loads(path.read_text())
    return figures, {n for n, f in figures.items() if published.get(n) != f}


def _bold(text: str, bold: bool) -> str:
    return f"**{text}**" if bold else text


def _dec(value: float, digits: int) -> str:
    """Rounded half up from the decimal the JSON holds (99.35 is 99.4, as written)."""
    return str(Decimal(str(value)).quantize(Decimal(10) ** -digits, rounding=ROUND_HALF_UP))


def _ms(value: float) -> str:
    return f"{value:.2f}" if value < 1 else f"{value:.1f}"


def helpers(changed: set[str]) -> dict[str, Any]:
    """The template's formatting functions: one place for each table's number format."""

    def row4(m: Mapping[str, float], bold: bool = False) -> str:
        cells = (f"{m[k]:.4f}" for k in ("ndcg@10", "recall@100", "mrr"))
        return " | ".join(_bold(c, bold) for c in cells)

    def lat3(m: Mapping[str, float], bold: bool = False) -> str:
        return " | ".join(_bold(_ms(m[k]), bold) for k in ("p50", "p95", "mean"))

    def recalls(m: Mapping[str, float], bold: str = "") -> str:
        keys = [f"{d}@{k}" for d in ("t2i", "i2t") for k in (1, 5, 10)]
        return " | ".join(_bold(f"{m[k]:.3f}", k == bold) for k in keys)

    def router_row(m: Mapping[str, Any], bold: bool = False) -> str:
        q, lat = m["metrics"], m["latency"]
        return " | ".join(
            [
                str(q["n"]),
                _bold(f"{q['accuracy']:.4f}", bold),
                _bold(f"{q['macro_f1']:.4f}", bold),
                f"{lat['p50_ms']:.2f}",
                f"{lat['p95_ms']:.2f}",
            ]
        )

    def pair(m: Mapping[str, Any], a: str, b: str) -> int:
        i, j = m["labels"].index(a), m["labels"].index(b)
        return int(m["confusion"][i][j] + m["confusion"][j][i])

    def diagonal(m: Mapping[str, Any]) -> int:
        return sum(row[i] for i, row in enumerate(m["confusion"]))

    def both(backends: Mapping[str, Any], key: str, spec: str) -> str:
        cells = []
        for name in ("llamacpp", "openai"):
            value = backends.get(name, {}).get(key)
            cells.append("-" if value is None else spec % value)
        return " | ".join(cells)

    return {
        "row4": row4,
        "lat3": lat3,
        "ms": _ms,
        "dec": _dec,
        "pct": lambda share: f"{100 * share:.1f}",
        "recalls": recalls,
        "router_row": router_row,
        "pair": pair,
        "diagonal": diagonal,
        "both": both,
        "bold_if": lambda bold, text: _bold(str(text), bold),
        "changed": lambda name: name in changed,
    }


def render(folder: Path, *, bench: Path = BENCH, img: Path | None = None) -> str:
    """The page; with ``img``, the plots are drawn there too."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    figures, changed = load(folder, bench)
    run_path = folder / RUN_FILE
    run = json.loads(run_path.read_text()) if run_path.is_file() else None
    label = None
    if run:
        m = run["machine"]
        label = f"{m['cpu']}, {m['cores']} cores ({m['date'][:10]})"
    env = Environment(
        loader=FileSystemLoader(TEMPLATE.parent),
        autoescape=False,  # Markdown out; the figures are numbers and our own file names
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    text = env.get_template(TEMPLATE.name).render(
        b=figures, run=run, label=label, **helpers(changed)
    )
    if img is not None:
        from evals.plots import write_plots

        drawn = write_plots({f"{n}.json": f for n, f in figures.items()}, img)
        failed = [f"{d.file}: {d.error}" for d in drawn if d.error]
        if failed:
            raise SystemExit("plots not drawn: " + "; ".join(failed))
    return text


def commands(template: str) -> list[str]:
    """The commands the template shows: every line of its ```bash blocks, continuation
    lines joined."""
    out: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", template, flags=re.S):
        joined = re.sub(r"\\\n\s*", "", block)
        out += [line.strip() for line in joined.splitlines() if line.strip()]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="docs/bench, or an `mmrag eval all` --out")
    parser.add_argument("--out", type=Path, help="write here instead of standard output")
    parser.add_argument("--bench", type=Path, default=BENCH, help="the published JSON")
    parser.add_argument(
        "--img", type=Path, default=BENCH / "img", help="where the plots go (docs/bench/img)"
    )
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        parser.error(f"{args.folder} is not a folder")
    text = render(args.folder, bench=args.bench, img=args.img)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # this checkout's evals, for the plots
    raise SystemExit(main())
