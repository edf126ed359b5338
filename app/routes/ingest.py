"""``POST /api/v1/ingest`` and ``GET /api/v1/jobs/{id}``: uploads become an ingest job
that runs in the background (:mod:`app.jobs`); answers never wait for it."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated

import anyio
from fastapi import APIRouter, File, Form, UploadFile

from app.deps import App, Ingester
from app.errors import ApiError
from app.jobs import Job, run_job
from app.schemas import ERRORS, ErrorOut, JobOut
from app.security import API
from app.uploads import safe_name

router = APIRouter(tags=["ingest"])


@router.post(
    f"{API}/ingest",
    status_code=202,
    response_model=JobOut,
    responses={**ERRORS, 413: {"model": ErrorOut}, 415: {"model": ErrorOut}},
)
async def ingest(
    who: Ingester,
    parts: App,
    files: Annotated[list[UploadFile], File(description="Documents, images, videos.")],
    workspace: Annotated[
        str | None, Form(description="Workspace to ingest into (default: the key's own).")
    ] = None,
) -> JobOut:
    """Upload files to ingest; returns a job to poll (``GET /api/v1/jobs/{id}``).
    The same file uploaded again is recognised and not stored twice."""
    svc, uploads = parts.service, parts.uploads
    target = workspace or who.home(parts.settings.workspace)
    if not who.sees(target):
        raise ApiError(403, "forbidden", f"this key does not see workspace {target!r}")
    supported = svc.ingestor.suffixes
    for f in files:
        suffix = Path(safe_name(f.filename, "upload")).suffix.lower()
        if suffix not in supported:
            raise ApiError(
                415,
                "unsupported_type",
                f"{safe_name(f.filename, 'upload')}: unsupported file type "
                f"'{suffix or 'none'}' (supported: {', '.join(sorted(supported))})",
            )
    saved: list[Path] = []
    try:
        for f in files:
            path = await anyio.to_thread.run_sync(uploads.save, f.file, f.filename, target)
            if path not in saved:
                saved.append(path)
    except BaseException:
        for path in saved:
            if not svc.is_source(str(path.resolve()), (target,)):
                uploads.discard(path)
        raise
    job = Job(uuid.uuid4().hex, saved, target)
    parts.jobs.add(job)
    parts.ingest_worker.submit(run_job, job, svc, uploads)
    return job.out()


@router.get(
    f"{API}/jobs/{{job_id}}",
    response_model=JobOut,
    responses={**ERRORS, 404: {"model": ErrorOut}},
)
def job_status(job_id: str, who: Ingester, parts: App) -> JobOut:
    """An ingest job: status, progress (0-1) and each file's outcome."""
    job = parts.jobs.get(job_id)
    if job is None or not who.sees(job.workspace):
        raise ApiError(404, "not_found", f"no job {job_id[:64]}")
    return job.out()
