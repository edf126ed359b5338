"""Crash points: ``kill -9`` this process at a named stage of ingestion, for the crash bench.

A crash is only reproducible if it lands at a known place, so the ingest code marks
its stages with :func:`checkpoint` and the environment says where to die:

- ``MMRAG_CRASH_AT=store:3`` sends SIGKILL to this process (as the OOM killer or a
  power cut would: no ``finally``, no flush) the 3rd time ``checkpoint("store")`` runs;
- ``MMRAG_CRASH_COUNT=FILE`` writes, when the process exits, how often each checkpoint
  was reached, as JSON; the bench runs a clean ingest this way to know the points a
  run can crash at.

With neither set, :func:`checkpoint` is a function that returns at once. These are
test hooks, not settings: nothing in normal use sets them.

The stages (``mmrag bench crash`` reports each): ``parse`` (a document was read),
``embed`` (passages were embedded, none stored), ``store`` (a file's parts were stored:
passages, figures, clips), ``media`` (a thumbnail or a video's keyframes were written),
``record`` (just before the item that marks a file done is stored) and ``replace``
(around the deletion of a replaced or removed version's items and files).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path

CRASH_AT = "MMRAG_CRASH_AT"
CRASH_COUNT = "MMRAG_CRASH_COUNT"
STAGES = ("parse", "embed", "store", "media", "record", "replace")


def _off(stage: str) -> None:
    return None


def _armed(at: str, count_file: str) -> Callable[[str], None]:
    target, _, nth = at.partition(":")
    if at and (target not in STAGES or not nth.isdigit() or int(nth) < 1):
        raise ValueError(f"{CRASH_AT}={at!r}: expected STAGE:N, STAGE one of {', '.join(STAGES)}")
    reached: Counter[str] = Counter()
    if count_file:
        atexit.register(lambda: Path(count_file).write_text(json.dumps(dict(reached))))

    def checkpoint(stage: str) -> None:
        reached[stage] += 1
        if stage == target and reached[stage] == int(nth):
            os.kill(os.getpid(), signal.SIGKILL)

    return checkpoint


def _from_environment() -> Callable[[str], None]:
    at, count_file = os.environ.get(CRASH_AT, ""), os.environ.get(CRASH_COUNT, "")
    return _armed(at, count_file) if at or count_file else _off


checkpoint: Callable[[str], None] = _from_environment()
