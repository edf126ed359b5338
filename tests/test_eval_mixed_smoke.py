"""``mmrag eval mixed`` on a slice of the real mixed set, so the command cannot rot.

The full set takes a quarter of an hour to ingest on two cores; this slice (a few real
questions of every kind, their gold files and some distractors of each corpus) runs the
same command end to end in a few minutes: the real ingest of text, PDF, photos and
video, every mode, the table and the JSON.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app

MIXED = Path(__file__).resolve().parents[2] / "shared" / "eval" / "mixed"
PER_KIND = 3
PDFS = ("FOOTLOCKER_2022_8K_dated-2022-05-20.pdf", "JOHNSON_JOHNSON_2022Q4_EARNINGS.pdf")
VIDEOS = ("realshort.mp4", "big_buck_bunny_432_433.webm")
DISTRACTORS = 30  # other abstracts and photos, so retrieval has something to get wrong

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not MIXED.is_dir(), reason="../shared/eval/mixed is absent"),
]


def _slice(folder: Path) -> dict[str, int]:
    """A manifest and queries.jsonl in ``folder`` over a slice of the real files."""
    rows = [json.loads(line) for line in (MIXED / "queries.jsonl").read_text().splitlines()]
    wanted_pdfs = {f"../documents/financebench/pdfs/{name}" for name in PDFS}
    wanted_videos = {f"../video/files/{name}" for name in VIDEOS}
    taken: dict[str, list[dict[str, object]]] = {}
    for row in rows:
        kind = "no" if row["label"] == ["no"] else row["id"].split("-")[0].split("_")[0]
        files = {g["file"] for g in row["gold"]}
        if kind == "financebench" and not files <= wanted_pdfs:
            continue
        if kind == "video" and not files <= wanted_videos:
            continue
        if len(taken.setdefault(kind, [])) < PER_KIND:
            taken[kind].append(row)
    gold = {g["file"] for rs in taken.values() for r in rs for g in r["gold"]}
    abstracts = sorted((MIXED.parent / "text" / "cranfield" / "abstracts").glob("*.txt"))
    photos = sorted((MIXED.parent / "images" / "coco" / "images").glob("*.jpg"))
    extra = [os.path.relpath(p, MIXED) for p in abstracts[:DISTRACTORS] + photos[:DISTRACTORS]]
    files = sorted(gold | wanted_pdfs | wanted_videos | set(extra))

    def here(relative: str) -> str:  # a path relative to MIXED, made relative to folder
        return os.path.relpath((MIXED / relative).resolve(), folder)

    (folder / "manifest.json").write_text(json.dumps({"ingest": [here(f) for f in files]}))
    lines = []
    for rs in taken.values():
        for r in rs:
            r = {**r, "gold": [{**g, "file": here(str(g["file"]))} for g in r["gold"]]}
            lines.append(json.dumps(r))
    (folder / "queries.jsonl").write_text("\n".join(lines) + "\n")
    return {kind: len(rs) for kind, rs in taken.items()}


def test_eval_mixed_runs_on_a_slice_of_the_real_set(
    tmp_path: Path, gguf_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "slice"
    folder.mkdir()
    kinds = _slice(folder)
    assert set(kinds) == {"cranfield", "financebench", "coco", "video", "no"}
    monkeypatch.setenv("MMRAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MMRAG_LLM_MODEL_PATH", str(gguf_path))
    out = tmp_path / "mixed.json"
    result = CliRunner().invoke(
        app, ["eval", "mixed", "--data", str(folder), "--json", str(out)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "routed" in result.output and "oracle" in result.output
    figures = json.loads(out.read_text())
    assert figures["kinds"] == kinds
    assert not figures["ingest"]["failed"]
    corpora = figures["ingest"]["corpora"]
    assert all(corpora[c] > 0 for c in ("paragraph", "document", "image", "clip", "video"))
    for mode in ("routed", "all", "oracle"):
        overall = figures["modes"][mode]["overall"]
        assert overall["questions"] == sum(kinds.values())
        assert overall["success@5"] is not None and overall["latency_ms"]["p50"] > 0
    # The oracle searches the labelled corpora over real material: it finds most golds.
    assert figures["modes"]["oracle"]["overall"]["success@5"] >= 0.5
    assert figures["modes"]["oracle"]["kinds"]["no"]["retrieved_nothing"] == 1.0
