"""Ingest jobs of the REST API: queued, run one at a time, polled by id.

The map is bounded (:data:`JOBS_KEPT`) and finished jobs expire after
:data:`JOB_TTL_S`, so a server that runs for months holds a fixed amount of them; when
every slot holds a job still waiting, a new one is refused with 429.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from app.errors import ApiError
from app.schemas import JobFile, JobOut
from app.service import Service
from app.uploads import Uploads, public_message
from ingest.pipeline import FileResult, FileStatus
from retrieval.errors import MmragError

log = logging.getLogger("mmrag.api")
JOBS_KEPT = 1000
JOB_TTL_S = 3600.0


@dataclass
class Job:
    id: str
    files: list[Path]
    workspace: str
    status: Literal["queued", "running", "done", "failed"] = "queued"
    progress: float = 0.0
    results: list[JobFile] = field(default_factory=list)
    message: str = ""
    finished: float | None = None

    def out(self) -> JobOut:
        return JobOut(
            id=self.id,
            status=self.status,
            progress=round(self.progress, 4),
            workspace=self.workspace,
            files=self.results,
            message=self.message,
        )


class Jobs:
    """Ingest jobs by id: bounded, finished ones forgotten after an hour."""

    def __init__(self, limit: int = JOBS_KEPT, ttl_s: float = JOB_TTL_S) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self.limit, self.ttl_s = limit, ttl_s

    def add(self, job: Job) -> None:
        with self._lock:
            now = time.monotonic()
            for key in [
                k for k, j in self._jobs.items() if j.finished and now - j.finished > self.ttl_s
            ]:
                del self._jobs[key]
            if len(self._jobs) >= self.limit:
                done = [k for k, j in self._jobs.items() if j.finished]
                if not done:
                    raise ApiError(
                        429, "busy", "too many ingest jobs are waiting; retry when some finish"
                    )
                del self._jobs[done[0]]
            self._jobs[job.id] = job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)


def run_job(job: Job, service: Service, uploads: Uploads) -> None:
    """Ingest a job's files, recording each file's outcome; never raises (the job says
    what failed, and an upload that failed is deleted)."""
    job.status = "running"
    total = max(len(job.files), 1)

    def on_file(result: FileResult) -> None:
        job.results.append(
            JobFile(
                path=Path(result.path).name,
                status=result.status.value,
                detail=public_message("; ".join(filter(None, [result.message, *result.warnings]))),
            )
        )
        job.progress = min(len(job.results) / total, 1.0)
        if result.status is FileStatus.FAILED:
            uploads.discard(Path(result.path))

    def on_step(_path: str, fraction: float) -> None:
        # Within a long file (a video, a scanned PDF): progress moves before it ends.
        job.progress = min((len(job.results) + fraction) / total, 0.999)

    try:
        service.ingest(job.files, progress=on_file, step=on_step, workspace=job.workspace)
        job.status, job.progress = "done", 1.0
    except MmragError as e:
        job.status, job.message = "failed", public_message(str(e))
    except Exception:  # the job reports it; the server goes on
        log.exception("ingest job %s failed", job.id)
        job.status, job.message = "failed", "an unexpected error; it was logged on the server"
    finally:
        job.finished = time.monotonic()
