"""Ingestion killed with SIGKILL at chosen points, then run again (issue 10, item 6).

The fault hook (``ingest/faults.py``) kills the real CLI in a subprocess at a named
stage; the re-run must leave exactly what a clean ingest leaves. The hook's own test
is fast; the ones that ingest are ``slow`` (each run loads the models in a new
process).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from evals.crash import REPO, bench_crash, compare, run_ingest, snapshot
from ingest.faults import CRASH_AT, CRASH_COUNT
from retrieval.encoders import SentenceTransformerEncoder
from tests.helpers import figure_pdf

DATA = Path(__file__).resolve().parents[2] / "shared" / "eval"
COUNT_TWICE = (
    "from ingest.faults import checkpoint\n"
    "for _ in range(3):\n"
    "    checkpoint('store')\n"
    "    checkpoint('parse')\n"
    "    print('passed', flush=True)\n"
)


def python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in (CRASH_AT, CRASH_COUNT)}
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**environ, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_fault_hook_kills_at_the_nth_checkpoint_and_counts(tmp_path: Path) -> None:
    killed = python(COUNT_TWICE, **{CRASH_AT: "store:2"})
    assert killed.returncode == -signal.SIGKILL
    assert killed.stdout.count("passed") == 1  # died the second time, before printing
    counts = tmp_path / "counts.json"
    counted = python(COUNT_TWICE, **{CRASH_COUNT: str(counts)})
    assert counted.returncode == 0 and counted.stdout.count("passed") == 3
    assert json.loads(counts.read_text()) == {"store": 3, "parse": 3}
    wrong = python(COUNT_TWICE, **{CRASH_AT: "storing:1"})
    assert wrong.returncode == 1 and "expected STAGE:N" in wrong.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("changed", "point"),
    [
        # The case: the figure is stored first; the PDF's passages and document
        # never were. The figure used to mark the PDF done.
        (False, "store:1"),
        # An update killed after the old version's document and figure were deleted,
        # before its passages were.
        (True, "replace:3"),
    ],
)
def test_a_killed_pdf_ingest_heals_on_the_next_run(
    tmp_path: Path, encoder: SentenceTransformerEncoder, changed: bool, point: str
) -> None:
    folder, data, clean, log = (
        tmp_path / "in",
        tmp_path / "data",
        tmp_path / "clean",
        tmp_path / "log",
    )
    folder.mkdir()
    pdf = figure_pdf(folder / "report.pdf", "Quarterly report, first page.")
    if changed:
        assert run_ingest(folder, data, log) == 0
        figure_pdf(pdf, "Quarterly report, revised.")
    assert run_ingest(folder, data, log, **{CRASH_AT: point}) == -signal.SIGKILL
    assert run_ingest(folder, clean, log) == 0
    expected = snapshot(clean, encoder)
    assert run_ingest(folder, data, log) == 0
    losses, corruptions = compare(expected, snapshot(data, encoder))
    assert not losses and not corruptions, (losses, corruptions, log.read_text()[-3000:])
    assert expected.items["paragraph"] and expected.items["image"]


@pytest.mark.slow
@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/eval is absent")
def test_crash_bench_trials_lose_nothing(tmp_path: Path) -> None:
    figures = bench_crash(DATA, trials=2, seed=7, work=tmp_path)
    assert figures["trials"] == 2 and figures["killed"] == 2
    assert figures["losses"] == 0 and figures["corruptions"] == 0, figures["results"]
    assert {r["scenario"] for r in figures["results"]} == {"fresh", "update"}
