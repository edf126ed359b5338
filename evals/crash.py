"""``mmrag bench crash``: kill -9 an ingest at seeded points; the next run must heal it.

A run killed anywhere (parsing, embedding, storing, writing thumbnails, just before or
after the item that marks a file done, while an old version is deleted) must lose
nothing and leave nothing wrong once the same ingest is run again. Each trial:

1. the folder is in a known state (``fresh``: nothing ingested yet; ``update``: an
   earlier version of the folder is ingested, then some files are changed, one added);
2. the real CLI ingests it in a subprocess with ``MMRAG_CRASH_AT=<stage>:<n>``
   (``ingest/faults.py``), which sends itself SIGKILL the n-th time that stage is
   reached; the points come from a seeded generator, n within the number of times a
   clean run reaches the stage (counted once per scenario with ``MMRAG_CRASH_COUNT``);
3. the same command runs again, unhindered, and must exit 0;
4. the index is compared with a clean ingest of the same folder: every item (id, source,
   content hash, parent, text, payload), the media files on disk (none missing, none
   that no item uses), and the top results of a few searches in every corpus.

A *loss* is something the clean index has and the healed one lacks (an item, a source
version, a thumbnail); a *corruption* is anything else that differs (an extra or
changed item, an orphaned file, other search results, a failed re-run).

The folder mixes what takes different paths through ingestion: two FinanceBench PDFs
(one with a figure), Markdown showing a local picture, text, photos, a short video.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rich.console import Console

from evals.base import Report
from ingest.faults import CRASH_AT, CRASH_COUNT
from retrieval.base import Corpus, Hit, Item
from retrieval.errors import ConfigError

Scenario = Literal["fresh", "update"]
SCENARIOS: tuple[Scenario, Scenario] = ("fresh", "update")
# The stages trials take, in turn, per scenario. A kill while parsing or embedding leaves
# nothing new stored; kills around the stores, the record of a file and the deletion of
# a replaced version leave the states that matter, so those take more turns.
TURNS: dict[Scenario, tuple[str, ...]] = {
    "fresh": ("store", "record", "media", "parse", "embed"),
    "update": ("replace", "record", "store", "replace", "media", "parse", "embed"),
}
QUERIES = (
    "Amcor net sales and adjusted EPS guidance",
    "Foot Locker chief executive officer appointment",
    "rocket on the launch pad",
    "lift increase of a wing in a propeller slipstream",
    "animals in a photo",
    "fire",
)
REPO = Path(__file__).resolve().parents[1]
INGEST_BATCH = 16
# A clean run of the folder takes ~30 s here; this only guards against a hang.
RUN_TIMEOUT_S = 900


# --- the folder ----------------------------------------------------------------------------


def _need(path: Path) -> Path:
    if not path.is_file():
        raise ConfigError(f"{path}: missing; the crash bench needs ../shared/eval (--data)")
    return path


def build_folder(folder: Path, data: Path, state: Literal["A", "B"]) -> None:
    """Write the mixed folder in state ``A`` (first version) or ``B`` (some files changed,
    one added, the rest as in A) from ``data`` (the shared evaluation data)."""
    pdfs = data / "documents" / "financebench" / "pdfs"
    coco = data / "images" / "coco" / "images"
    cranfield = data / "text" / "cranfield" / "abstracts"
    videos = data / "video" / "files"
    if folder.exists():
        shutil.rmtree(folder)
    for sub in ("filings", "notes/pics", "photos", "video"):
        (folder / sub).mkdir(parents=True)
    shutil.copy(_need(pdfs / "FOOTLOCKER_2022_8K_dated-2022-05-20.pdf"), folder / "filings")
    amcor = _need(pdfs / "AMCOR_2023Q4_EARNINGS.pdf").read_bytes()  # one figure
    shutil.copy(_need(data / "images" / "skimage" / "images" / "rocket.jpg"), folder / "notes/pics")
    abstracts = [_need(cranfield / f"cranfield-{n:04d}.txt").read_text() for n in (1, 2, 3, 4)]
    launch = "The rocket stood on the pad for two days while the crew checked the fuel lines."
    if state == "A":
        (folder / "filings" / "AMCOR_2023Q4_EARNINGS.pdf").write_bytes(amcor)
        (folder / "notes" / "wing.txt").write_text("\n\n".join(abstracts[:3]))
        caption = "The rocket before launch"
        shutil.copy(_need(coco / "000000000790.jpg"), folder / "photos" / "street.jpg")
        shutil.copy(_need(videos / "realshort.mp4"), folder / "video" / "clip.mp4")
    else:
        # Bytes after %%EOF: a new version (new hash, new item ids) with the same pages.
        (folder / "filings" / "AMCOR_2023Q4_EARNINGS.pdf").write_bytes(amcor + b"\n% rev 2\n")
        (folder / "notes" / "wing.txt").write_text("\n\n".join(abstracts))
        caption = "The rocket after the fuel check"
        shutil.copy(_need(coco / "000000030752.jpg"), folder / "photos" / "street.jpg")
        shutil.copy(_need(videos / "fire2.mp4"), folder / "video" / "clip.mp4")
        (folder / "notes" / "added.txt").write_text(abstracts[0].upper())
    (folder / "notes" / "launch.md").write_text(
        f"# Launch notes\n\n{launch}\n\n![{caption}](pics/rocket.jpg)\n"
    )


# --- what an index holds -----------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """An index in terms that compare across data folders: media paths are relative to
    the data folder, item payloads are fingerprints."""

    items: dict[str, dict[str, str]]  # corpus -> item id -> fingerprint
    versions: dict[str, list[str]]  # source -> its content hashes, over all corpora
    media_on_disk: frozenset[str]
    media_used: frozenset[str]
    searches: dict[str, dict[str, list[str]]]  # query -> corpus -> top item ids


def _relative(path: str, data_dir: Path) -> str:
    p = Path(path)
    return str(p.relative_to(data_dir)) if p.is_relative_to(data_dir) else path


def _fingerprint(item: Item, data_dir: Path) -> str:
    extra = dict(item.extra)
    if isinstance(extra.get("thumbnail"), str):
        extra["thumbnail"] = _relative(extra["thumbnail"], data_dir)
    if "keyframes" in extra:
        extra["keyframes"] = [_relative(str(k), data_dir) for k in extra["keyframes"] or []]
    body = [item.source, item.content_hash, item.parent_id, item.title, item.text, item.page]
    blob = json.dumps([*body, list(item.heading), item.char_start, item.char_end, extra])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _ranked(hits: Mapping[Corpus, Sequence[Hit]], top: int = 5) -> dict[str, list[str]]:
    """The first ``top`` ids per corpus, ties in the fused score ordered by id: RRF gives
    equal scores to items at mirrored ranks, and the engine breaks such ties by where
    it happens to keep each point, which differs between two equal indexes."""
    out = {}
    for corpus, found in hits.items():
        ordered = sorted(found, key=lambda h: (-round(h.score, 6), h.item.id))
        out[corpus.value] = [h.item.id for h in ordered[:top]]
    return out


def snapshot(data_dir: Path, encoder: Any) -> Snapshot:
    """Read the index and media folder under ``data_dir`` (no process may hold it)."""
    from ingest.images.describe import CnnImageAnalyzer
    from ingest.media import CnnImageEncoder
    from ingest.versions import media_files
    from retrieval.edge_store import EdgeStore
    from retrieval.index import Index

    store = EdgeStore(data_dir / "qdrant")
    try:
        items: dict[str, dict[str, str]] = {}
        versions: dict[str, set[str]] = {}
        used: set[str] = set()
        for corpus in Corpus:
            found = store.items_of(corpus) if store.exists(corpus) else []
            items[corpus.value] = {i.id: _fingerprint(i, data_dir) for i in found}
            for i in found:
                versions.setdefault(i.source, set()).add(i.content_hash)
                used.update(_relative(f, data_dir) for f in media_files(i))
        # The CNN is never loaded: these searches are by text.
        index = Index(store, encoder, visual=CnnImageEncoder(CnnImageAnalyzer))
        searches = {q: _ranked(index.search(q, list(Corpus), limit=8)) for q in QUERIES}
    finally:
        store.close()
    media = data_dir / "media"
    on_disk = {
        str(p.relative_to(data_dir))
        for sub in ("thumbnails", "keyframes")
        if (media / sub).is_dir()
        for p in (media / sub).iterdir()
    }
    return Snapshot(
        items,
        {s: sorted(h) for s, h in versions.items()},
        frozenset(on_disk),
        frozenset(used),
        searches,
    )


def compare(clean: Snapshot, healed: Snapshot) -> tuple[list[str], list[str]]:
    """(losses, corruptions) of ``healed`` against ``clean``, one line each."""
    losses: list[str] = []
    bad: list[str] = []
    for corpus, want in clean.items.items():
        got = healed.items.get(corpus, {})
        if missing := want.keys() - got.keys():
            losses.append(f"{corpus}: {len(missing)} of {len(want)} items missing")
        if extra := got.keys() - want.keys():
            bad.append(f"{corpus}: {len(extra)} items that a clean ingest does not have")
        if changed := [i for i in want.keys() & got.keys() if want[i] != got[i]]:
            bad.append(f"{corpus}: {len(changed)} items differ from a clean ingest")
    for source, hashes in clean.versions.items():
        if not set(hashes) <= set(healed.versions.get(source, [])):
            losses.append(f"{Path(source).name}: version lost")
    for source, hashes in healed.versions.items():
        if set(hashes) - set(clean.versions.get(source, [])):
            bad.append(f"{Path(source).name}: items of a version a clean ingest does not have")
    if gone := healed.media_used - healed.media_on_disk:
        losses.append(f"{len(gone)} media files that items point at are missing")
    if orphans := healed.media_on_disk - healed.media_used:
        bad.append(f"{len(orphans)} media files that no item uses")
    for query, per_corpus in clean.searches.items():
        for corpus, ids in per_corpus.items():
            if healed.searches.get(query, {}).get(corpus) != ids:
                bad.append(f"search {query!r} in {corpus} differs from a clean ingest")
    return losses, bad


# --- runs ----------------------------------------------------------------------------------


def run_ingest(folder: Path, data_dir: Path, log: Path, **env: str) -> int:
    """The real CLI, ``mmrag ingest FOLDER``, in a subprocess on this checkout's code."""
    environ = {
        **{k: v for k, v in os.environ.items() if k not in (CRASH_AT, CRASH_COUNT)},
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "MMRAG_DATA_DIR": str(data_dir),
        # Several flushes per run, so that a kill can land between two files' documents.
        "MMRAG_INGEST_BATCH_SIZE": str(INGEST_BATCH),
        **env,
    }
    command = [sys.executable, "-c", "from app.cli import main; main()", "ingest", str(folder)]
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(f'{k}={v}' for k, v in env.items())} mmrag ingest\n".encode())
        out.flush()
        done = subprocess.run(
            command, env=environ, stdout=out, stderr=out, timeout=RUN_TIMEOUT_S, check=False
        )
    return done.returncode


@dataclass(frozen=True)
class _Setup:
    """Per scenario: the clean index to compare with, the data folder to start from
    (None: empty), and how often a run reaches each stage."""

    clean: Snapshot
    start: Path | None
    counts: Mapping[str, int]


def _fresh_data(data_dir: Path, start: Path | None) -> None:
    if data_dir.exists():
        shutil.rmtree(data_dir)
    if start is not None:
        shutil.copytree(start, data_dir)


def _prepare(work: Path, data: Path, encoder: Any, console: Console | None) -> dict[str, _Setup]:
    """Clean runs: A fresh (counted; it is also the update's starting point), B over A
    (counted), B fresh (the update's reference). Every run uses the same data folder
    path, since items record their thumbnails' paths; results are moved aside."""
    folder, data_dir, logs = work / "folder", work / "data", work / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    def clean_run(state: Literal["A", "B"], start: Path | None, name: str) -> dict[str, int]:
        build_folder(folder, data, state)
        _fresh_data(data_dir, start)
        counts = work / f"{name}.counts.json"
        began = time.perf_counter()
        rc = run_ingest(folder, data_dir, logs / f"{name}.log", **{CRASH_COUNT: str(counts)})
        if rc != 0:
            raise RuntimeError(f"the clean ingest '{name}' exited {rc}; see {logs / name}.log")
        if console:
            console.print(f"[dim]clean ingest {name}: {time.perf_counter() - began:.1f} s[/]")
        return dict(json.loads(counts.read_text()))

    counts_fresh = clean_run("A", None, "fresh")
    clean_a = snapshot(data_dir, encoder)
    _fresh_data(work / "clean-A", None)
    data_dir.rename(work / "clean-A")
    counts_update = clean_run("B", work / "clean-A", "update")
    over_a = snapshot(data_dir, encoder)
    counts_b = clean_run("B", None, "clean-B")
    del counts_b
    clean_b = snapshot(data_dir, encoder)
    # An update without a crash must already equal a fresh ingest of the new folder.
    losses, bad = compare(clean_b, over_a)
    if losses or bad:
        raise RuntimeError(f"an uninterrupted update differs from a fresh ingest: {losses + bad}")
    return {
        "fresh": _Setup(clean_a, None, counts_fresh),
        "update": _Setup(clean_b, work / "clean-A", counts_update),
    }


def _points(
    setups: Mapping[str, _Setup], trials: int, seed: int
) -> list[tuple[Scenario, str, int]]:
    """Seeded crash points: scenarios alternate, stages take turns within each (``TURNS``),
    and n is drawn among the times a clean run reaches the stage."""
    rng = random.Random(seed)
    points: list[tuple[Scenario, str, int]] = []
    for t in range(trials):
        scenario = SCENARIOS[t % 2]
        counts = setups[scenario].counts
        turns = [s for s in TURNS[scenario] if counts.get(s, 0) > 0]
        stage = turns[(t // 2) % len(turns)]
        points.append((scenario, stage, rng.randint(1, counts[stage])))
    return points


def bench_crash(
    data: Path,
    *,
    trials: int = 20,
    seed: int = 0,
    work: Path | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run ``trials`` kill-and-heal trials; figures per stage and every trial's outcome."""
    import tempfile

    from retrieval.encoders import SentenceTransformerEncoder

    encoder = SentenceTransformerEncoder()
    with tempfile.TemporaryDirectory(prefix="mmrag-crash-") as tmp:
        root = work or Path(tmp)
        began = time.perf_counter()
        setups = _prepare(root, data, encoder, console)
        prepare_s = time.perf_counter() - began
        folder, data_dir, logs = root / "folder", root / "data", root / "logs"
        results: list[dict[str, Any]] = []
        for t, (scenario, stage, nth) in enumerate(_points(setups, trials, seed)):
            setup = setups[scenario]
            began = time.perf_counter()
            build_folder(folder, data, "A")
            _fresh_data(data_dir, setup.start)
            if scenario == "update":
                build_folder(folder, data, "B")
            log = logs / f"trial-{t:03d}.log"
            killed = run_ingest(folder, data_dir, log, **{CRASH_AT: f"{stage}:{nth}"})
            rerun = run_ingest(folder, data_dir, log)
            losses, bad = compare(setup.clean, snapshot(data_dir, encoder))
            if rerun != 0:
                bad.append(f"the re-run exited {rerun}")
            results.append(
                {
                    "trial": t,
                    "scenario": scenario,
                    "stage": stage,
                    "n": nth,
                    "of": setup.counts[stage],
                    "killed": killed == -9,
                    "rerun_exit": rerun,
                    "losses": losses,
                    "corruptions": bad,
                    "seconds": round(time.perf_counter() - began, 1),
                }
            )
            if console:
                outcome = "ok" if not (losses or bad) else "; ".join(losses + bad)
                console.print(
                    f"[dim]trial {t} {scenario} {stage}:{nth}/{setup.counts[stage]} "
                    f"killed={killed == -9} {results[-1]['seconds']} s: {outcome}[/]"
                )
    by_stage: dict[str, dict[str, int]] = {}
    for r in results:
        for key in (r["stage"], f"{r['scenario']} {r['stage']}"):
            row = by_stage.setdefault(
                key, dict.fromkeys(("trials", "killed", "corruptions", "losses"), 0)
            )
            row["trials"] += 1
            row["killed"] += int(r["killed"])
            row["corruptions"] += int(bool(r["corruptions"]))
            row["losses"] += int(bool(r["losses"]))
    return {
        "trials": len(results),
        "seed": seed,
        "killed": sum(r["killed"] for r in results),
        "corruptions": sum(bool(r["corruptions"]) for r in results),
        "losses": sum(bool(r["losses"]) for r in results),
        # Per stage, and per scenario and stage ("update replace").
        "stages": dict(sorted(by_stage.items())),
        "checkpoints_per_clean_run": {s: dict(setups[s].counts) for s in SCENARIOS},
        "prepare_seconds": round(prepare_s, 1),
        "trial_seconds_mean": round(sum(r["seconds"] for r in results) / max(len(results), 1), 1),
        "results": results,
    }


def crash_report(
    data: Path, *, trials: int, seed: int, work: Path | None, console: Console | None = None
) -> Report:
    """``mmrag bench crash``: the terminal gets the summary (every trial is in the file);
    any loss or corruption fails the run."""
    figures = bench_crash(data, trials=trials, seed=seed, work=work, console=console)
    summary = {k: v for k, v in figures.items() if k != "results"}
    return Report(figures, summary, failed=bool(figures["losses"] or figures["corruptions"]))
