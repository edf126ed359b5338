"""``mmrag eval all``'s runner and page, and docs/benchmarks.md made from the same JSON.

No model runs here: the page is written from the published docs/bench/*.json as step
outputs, and the runner is driven with steps whose inputs are missing or that are
replaced by small ones.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from PIL import Image
from typer.testing import CliRunner

from evals import report as report_module
from evals.base import Report
from evals.plots import PLOTS, write_plots
from evals.report import PAGE_FILE, RUN_FILE, Step, machine, run_all, steps, write_page
from retrieval.errors import MmragError

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "docs" / "bench"
HOSTILE = "<script>alert('x')</script> & <b>bold</b>"
PNG = b"\x89PNG\r\n\x1a\n"


def report_folder(out: Path) -> Path:
    """A report as ``eval all`` leaves it, from the published JSON: every step ok but one
    failed and one skipped (their messages carrying markup), plus a skipped backend."""
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for step in steps(Path("../shared/eval"), Path("/tmp/w"), openai=f"no server {HOSTILE}"):
        shutil.copy(BENCH / step.file, out / step.file)
        records.append(
            {
                "key": step.key,
                "name": step.name,
                "command": "mmrag " + " ".join(step.args),
                "params": dict(step.params),
                "reduced": step.reduced,
                "notes": list(step.notes),
                "json": step.file,
                "status": "ok",
                "seconds": 61.5,
                "load_start": 1.5,
                "load_end": 2.0,
            }
        )
    records[0].update(status="failed", error=f"ValueError: {HOSTILE}", traceback=HOSTILE)
    records[3].update(status="skipped", reason=f"missing {HOSTILE}")
    run = {
        "data": "../shared/eval",
        "work": "/tmp/w",
        "data_dir": "/tmp/w/data",
        "machine": {**machine(), "cpu": f"CPU {HOSTILE}"},
        "load_start": [1.0, 0.5, 0.25],
        "load_end": [2.0, 1.0, 0.5],
        "seconds": 2000.0,
        "steps": records,
    }
    (out / RUN_FILE).write_text(json.dumps(run))
    write_page(out)
    return out


class _Page(HTMLParser):
    """The page's text and image sources, as a browser parses them."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.images: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"] or "")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return report_folder(tmp_path_factory.mktemp("report"))


def test_the_page_escapes_every_text_it_shows(written: Path) -> None:
    page = _parse(written / PAGE_FILE)
    assert "script" not in page.tags and "b" not in page.tags
    text = "".join(page.text)
    assert f"ValueError: {HOSTILE}" in text  # the failed step's error, shown as text
    assert f"missing {HOSTILE}" in text  # the skipped step's reason
    assert f"no server {HOSTILE}" in text  # the grounding backend skipped
    assert "&lt;script&gt;" in (written / PAGE_FILE).read_text()


def test_the_page_lists_every_step_with_its_command_and_the_machine(written: Path) -> None:
    text = " ".join("".join(_parse(written / PAGE_FILE).text).split())
    for step in json.loads((written / RUN_FILE).read_text())["steps"]:
        assert step["name"] in text and step["command"] in text
    for key in ("python", "torch", "mmrag", "git commit", "RAM", "cores", "date"):
        assert key in text
    assert "10 ok" in text and "1 failed" in text and "1 skipped" in text
    assert "6 trials instead of 24" in text  # a reduced parameter, said on the page
    # the tables come from the JSON: Cranfield's hybrid nDCG@10, the mixed table's modes
    assert "0.4084" in text and "oracle" in text


def test_the_page_shows_every_plot_as_a_valid_png_beside_it(written: Path) -> None:
    sources = _parse(written / PAGE_FILE).images
    assert sorted(sources) == sorted(p.file for p in PLOTS)
    for src in sources:
        path = written / src  # relative to index.html
        assert path.read_bytes().startswith(PNG)
        with Image.open(path) as image:
            image.verify()
            assert image.size[0] > 300 and image.size[1] > 300


def test_a_plot_without_its_optional_input_is_still_drawn(tmp_path: Path) -> None:
    ingest = json.loads((BENCH / "financebench-ingest.json").read_text())
    drawn = write_plots({"financebench-ingest.json": ingest}, tmp_path)
    assert [(d.file, d.error) for d in drawn] == [("ingest-throughput.png", "")]
    broken = write_plots({"router.json": {"methods": {}}}, tmp_path)
    assert broken[0].error.startswith("KeyError") and not (tmp_path / broken[0].file).exists()


def test_steps_follow_the_readme_in_its_order() -> None:
    readme = (ROOT / "README.md").read_text()
    listed = re.findall(r"^mmrag ((?:eval|bench) \w+)", readme, flags=re.M)
    assert listed[-1] == "eval all"
    assert [s.name for s in steps(Path("d"), Path("w"))] == listed[:-1]


def test_missing_inputs_skip_steps_and_the_page_is_written(tmp_path: Path) -> None:
    out = tmp_path / "report"
    failed = run_all(
        tmp_path / "absent", out, work=tmp_path / "work", only=["eval-text", "bench-ocr"]
    )
    run = json.loads((out / RUN_FILE).read_text())
    assert not failed
    assert [(s["key"], s["status"]) for s in run["steps"]] == [
        ("eval-text", "skipped"),
        ("bench-ocr", "skipped"),
    ]
    assert all(s["reason"].startswith("missing ") for s in run["steps"])
    assert "per_pdf" in run["steps"][1]["params"]
    assert (out / PAGE_FILE).is_file()


def _stub_steps(monkeypatch: pytest.MonkeyPatch, seen: dict[str, Any]) -> None:
    def ok() -> Report:
        seen["data_dir"] = __import__("os").environ["MMRAG_DATA_DIR"]
        return Report({"figures": "ü"}, "shown", ensure_ascii=False)

    def broken() -> Report:
        raise RuntimeError("the model fell over <here>")

    monkeypatch.setattr(
        report_module,
        "steps",
        lambda data, work, openai=None: [
            Step("eval-ok", ("eval", "ok"), "ok.json", ok),
            Step("eval-broken", ("eval", "broken"), "broken.json", broken),
        ],
    )


def test_a_failed_step_is_reported_and_the_others_still_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}
    _stub_steps(monkeypatch, seen)
    out, work = tmp_path / "report", tmp_path / "work"
    assert run_all(tmp_path, out, work=work) is True
    # the same JSON as --json writes (Report.saved), in a fresh data folder
    assert (out / "ok.json").read_text() == Report({"figures": "ü"}, "", ensure_ascii=False).saved()
    assert seen["data_dir"] == str(work / "data")
    broken = json.loads((out / RUN_FILE).read_text())["steps"][1]
    assert broken["status"] == "failed" and "the model fell over <here>" in broken["error"]
    assert "the model fell over &lt;here&gt;" in (out / PAGE_FILE).read_text()


def test_the_command_exits_1_after_writing_the_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.cli import app

    _stub_steps(monkeypatch, {})
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["eval", "all", "--data", str(tmp_path), "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert (out / PAGE_FILE).is_file()
    again = CliRunner().invoke(app, ["eval", "all", "--out", str(out), "--page-only"])
    assert again.exit_code == 0, again.output


def test_the_work_folder_must_be_fresh(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "old-index").mkdir()
    with pytest.raises(MmragError, match="not empty"):
        run_all(tmp_path, tmp_path / "out", work=tmp_path / "work")


def _benchmarks_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("benchmarks", ROOT / "scripts/benchmarks.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _flat(text: str) -> str:
    return " ".join(text.replace("\\\n", " ").split())


def test_docs_benchmarks_md_is_generated_from_docs_bench(tmp_path: Path) -> None:
    script = _benchmarks_script()
    text = script.render(BENCH, img=tmp_path)
    # the committed page is this output: regenerate it after changing the template or JSON
    assert text == (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    commands = script.commands(script.TEMPLATE.read_text())
    assert len(commands) >= 15
    flat = _flat(text)
    assert [c for c in commands if _flat(c) not in flat] == []
    for plot in PLOTS:
        assert f"(bench/img/{plot.file})" in text
        assert (tmp_path / plot.file).read_bytes().startswith(PNG)


def test_docs_benchmarks_md_from_a_report_says_where_it_came_from(written: Path) -> None:
    text = _benchmarks_script().render(written)
    assert "measured by it on" in text and "6 trials instead of 24" in text
    assert "| **all** | **24** |" in text  # the report's crash.json (here the published one)
