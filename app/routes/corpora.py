"""``/api/v1/corpora`` and ``/api/v1/sources``: what the caller's workspaces hold, and
removing a source."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.deps import Admin, App, Ingester, Reader, Workspaces, scope_of
from app.errors import ApiError
from app.schemas import ERRORS, CorporaOut, DeletedOut, ErrorOut, SourceEntry, SourcesOut
from app.security import API

router = APIRouter(tags=["corpora"])


@router.get(f"{API}/corpora", response_model=CorporaOut, responses=ERRORS)
def corpora(who: Reader, parts: App, workspaces: Workspaces = None) -> CorporaOut:
    """Item counts per corpus (of the key's workspaces)."""
    counts = parts.service.collections(scope_of(who, workspaces))
    return CorporaOut(corpora={c.value: n for c, n in counts.items()})


@router.get(f"{API}/sources", response_model=SourcesOut, responses=ERRORS)
def list_sources(
    who: Ingester,
    parts: App,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
    workspaces: Workspaces = None,
) -> SourcesOut:
    """The sources of the key's workspaces, sorted by path, a page at a time."""
    found = parts.service.sources(scope_of(who, workspaces))
    page = found[offset : offset + limit]
    return SourcesOut(
        total=len(found),
        sources=[
            SourceEntry(source=x.source, corpora=[c.value for c in x.corpora], on_disk=x.on_disk)
            for x in page
        ],
    )


@router.delete(
    f"{API}/sources",
    response_model=DeletedOut,
    responses={**ERRORS, 404: {"model": ErrorOut}},
)
def delete_source(
    who: Admin,
    parts: App,
    source: str = Query(..., min_length=1, max_length=4096, description="The source path."),
) -> DeletedOut:
    """Remove every item of one source (in the key's workspaces) from every corpus."""
    if not parts.service.delete_source(source, who.scope):
        raise ApiError(404, "not_found", "no such source in the index")
    return DeletedOut(source=source, deleted=True)
