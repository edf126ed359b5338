"""The embedded store on Qdrant Edge: the Qdrant engine (Rust) inside this process.

qdrant-client's local mode is pure Python: its sparse search walks every point in an
interpreter loop (about 40 ms per query at 1,400 passages, growing linearly). Qdrant
Edge runs the real engine in-process on a folder, with the same data model: named
dense vectors, sparse vectors with the IDF modifier, prefetch and RRF fusion, payload
filters. Each corpus is one Edge shard in ``<path>/<prefix>_<corpus>``; since a shard
has no collection metadata, the encoders that filled it are recorded beside it in
``encoders.json`` and checked on every open, as for a Qdrant collection.

Shards have the shape of :mod:`retrieval.schema`, and searches run the plan of
:mod:`retrieval.query`: this module only translates both into Qdrant Edge's objects
(:meth:`EdgeStore._filter`, :meth:`EdgeStore._run`).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from retrieval.base import (
    DEFAULT_WORKSPACE,
    Corpus,
    EncoderInfo,
    Item,
    Scope,
    SparseVector,
    Vectors,
)
from retrieval.engine import Engine, ScoredPoint, serialised
from retrieval.errors import StoreError
from retrieval.folder_lock import FolderLock
from retrieval.query import Condition, IsEmpty, Match, Nearest, QueryPlan, Where, scope
from retrieval.schema import (
    DENSE,
    HASH_FIELDS,
    SPARSE,
    VISUAL,
    check_batch,
    check_encoders,
    encoder_metadata,
    hashes_by_source,
    item_from,
    payload_of,
    visual_part,
)

_META = "encoders.json"
_UPSERT_BATCH = 512


def _edge() -> Any:
    try:
        import qdrant_edge
    except ImportError as e:
        raise StoreError("the embedded engine is missing: pip install qdrant-edge-py") from e
    return qdrant_edge


class EdgeStore(Engine):
    """One Qdrant Edge shard per corpus under ``path``; one process per folder.

    The folder is locked (:class:`FolderLock`) before any shard is touched, so a second
    process on the same folder fails at once with a message naming the holder, and
    leaves the holder's files alone; the shards that exist are then opened.
    """

    def __init__(self, path: Path | str, *, prefix: str = "mmrag") -> None:
        self.root = Path(path)
        self.prefix = prefix
        self._q = _edge()
        self._shards: dict[Corpus, Any] = {}
        self._known: dict[Corpus, tuple[EncoderInfo, EncoderInfo, EncoderInfo | None]] = {}
        self.lock = FolderLock(self.root)
        self._mutex = threading.RLock()
        try:
            for corpus in Corpus:
                folder = self._folder(corpus)
                if (folder / _META).is_file():
                    shard = self._open(lambda f=folder: self._q.EdgeShard.load(str(f)))
                    self._shards[corpus] = shard
                    self._index_fields(shard)
        except BaseException:
            self.close()
            raise

    def _folder(self, corpus: Corpus) -> Path:
        return self.root / self.collection(corpus)

    def _open(self, opener: Any) -> Any:
        try:
            return opener()
        except Exception as e:
            hint = ""
            if "WouldBlock" in str(e) or "lock" in str(e).lower():
                hint = (
                    ": another mmrag process has this data folder open (the embedded store "
                    "allows one process per folder); stop it, or run a Qdrant server and set "
                    "MMRAG_QDRANT_URL"
                )
            raise StoreError(f"cannot open the embedded store at {self.root}{hint} ({e})") from e

    # -- collections ---------------------------------------------------------------

    @serialised
    def exists(self, corpus: Corpus) -> bool:
        return corpus in self._shards

    @serialised
    def ensure(
        self,
        corpus: Corpus,
        dense: EncoderInfo,
        sparse: EncoderInfo,
        visual: EncoderInfo | None = None,
    ) -> None:
        if self._known.get(corpus) == (dense, sparse, visual):
            return
        folder = self._folder(corpus)
        if corpus in self._shards:
            meta = json.loads((folder / _META).read_text(encoding="utf-8"))
            check_encoders(corpus, folder.name, meta, dense, sparse, visual)
        else:
            q = self._q
            vectors = {DENSE: q.EdgeVectorParams(size=dense.dim, distance=q.Distance.Cosine)}
            if visual is not None:
                vectors[VISUAL] = q.EdgeVectorParams(size=visual.dim, distance=q.Distance.Cosine)
            config = q.EdgeConfig(
                vectors=vectors,
                sparse_vectors={SPARSE: q.EdgeSparseVectorParams(modifier=q.Modifier.Idf)},
            )
            shard = self._open(lambda: q.EdgeShard.create(str(folder), config))
            self._shards[corpus] = shard
            self._index_fields(shard)
            # Written last and atomically: a folder without it is not a finished shard.
            tmp = folder / f".{_META}.tmp"
            tmp.write_text(json.dumps(encoder_metadata(dense, sparse, visual)), encoding="utf-8")
            os.replace(tmp, folder / _META)
        self._known[corpus] = (dense, sparse, visual)

    @serialised
    def count(self, corpus: Corpus, workspaces: Scope = None) -> int:
        shard = self._shards.get(corpus)
        if shard is None:
            return 0
        request = self._q.CountRequest(
            exact=True, filter=self._filter(scope(workspaces=workspaces))
        )
        return int(shard.count(request))

    # -- writing -------------------------------------------------------------------

    @serialised
    def upsert(
        self,
        items: Sequence[Item],
        dense: Vectors,
        sparse: Sequence[SparseVector],
        visual: Sequence[Vectors | None] | None = None,
    ) -> None:
        corpus = check_batch(items, dense, sparse, visual)
        if corpus is None:
            return
        shard = self._shard(corpus)
        q = self._q
        for start in range(0, len(items), _UPSERT_BATCH):
            points = [
                q.Point(
                    items[i].id,
                    {
                        DENSE: dense[i].tolist(),
                        SPARSE: self._sparse(sparse[i]),
                        **visual_part(visual, i),
                    },
                    payload_of(items[i]),
                )
                for i in range(start, min(start + _UPSERT_BATCH, len(items)))
            ]
            shard.update(q.UpdateOperation.upsert_points(points))
        shard.flush()

    @serialised
    def delete_stale(
        self, corpus: Corpus, source: str, keep_hash: str, workspace: str = DEFAULT_WORKSPACE
    ) -> None:
        self._delete(corpus, scope([source], [workspace], except_hash=keep_hash))

    @serialised
    def delete_source(self, corpus: Corpus, source: str, workspaces: Scope = None) -> None:
        self._delete(corpus, scope([source], workspaces))

    # -- reading -------------------------------------------------------------------

    @serialised
    def source_hashes(
        self, corpus: Corpus, workspaces: Scope = None, *, whole_files: bool = False
    ) -> dict[str, set[str]]:
        """See ``QdrantStore.source_hashes``."""
        where = scope(workspaces=workspaces)
        return hashes_by_source(self._scroll(corpus, HASH_FIELDS, where), whole_files=whole_files)

    @serialised
    def items_of(
        self, corpus: Corpus, source: str | None = None, workspaces: Scope = None
    ) -> list[Item]:
        where = scope(None if source is None else [source], workspaces)
        return [item_from(corpus, pid, p) for pid, p in self._scroll(corpus, True, where)]

    @serialised
    def close(self) -> None:
        try:
            for shard in self._shards.values():
                shard.close()
        finally:
            self._shards.clear()
            self._known.clear()
            self.lock.release()

    # -- internals -----------------------------------------------------------------

    def _shard(self, corpus: Corpus) -> Any:
        shard = self._shards.get(corpus)
        if shard is None:
            raise StoreError(f"the {corpus.value} corpus has no collection yet (ensure it first)")
        return shard

    def _index_fields(self, shard: Any) -> None:
        """Index the payload fields every read filters on (shards made before have none)."""
        q = self._q
        have = set(shard.info().payload_schema)
        for name, params in (
            ("workspace", q.KeywordIndexParams(is_tenant=True)),
            ("source", q.KeywordIndexParams()),
        ):
            if name not in have:
                shard.update(q.UpdateOperation.create_field_index(name, params))

    def _run(self, corpus: Corpus, plan: QueryPlan) -> Sequence[ScoredPoint]:
        shard = self._shard(corpus)
        q = self._q
        flt = self._filter(plan.where)
        with_vector = [DENSE] if plan.with_dense else None
        if plan.fusion is None:
            (only,) = plan.nearest
            request = q.QueryRequest(
                limit=plan.limit,
                query=self._nearest(only),
                filter=flt,
                with_payload=True,
                with_vector=with_vector,
            )
        else:
            request = q.QueryRequest(
                limit=plan.limit,
                prefetches=[
                    q.Prefetch(limit=n.limit, query=self._nearest(n), filter=flt)
                    for n in plan.nearest
                ],
                query=q.Fusion.Rrf(k=plan.fusion.k, weights=list(plan.fusion.weights)),
                with_payload=True,
                with_vector=with_vector,
            )
        return shard.query(request)

    def _nearest(self, nearest: Nearest) -> Any:
        v = nearest.vector
        vector = self._sparse(v) if isinstance(v, SparseVector) else list(v)
        return self._q.Query.Nearest(vector, using=nearest.using)

    def _sparse(self, vector: SparseVector) -> Any:
        return self._q.SparseVector(list(vector.indices), list(vector.values))

    def _filter(self, where: Where | None) -> Any:
        """A neutral filter (:func:`retrieval.query.scope`) as a Qdrant Edge ``Filter``."""
        return None if where is None else self._condition(where)

    def _condition(self, c: Condition) -> Any:
        q = self._q
        if isinstance(c, Match):
            return q.FieldCondition(key=c.key, match=q.MatchAny(list(c.values)))
        if isinstance(c, IsEmpty):
            return q.IsEmptyCondition(c.key)
        return q.Filter(
            must=[self._condition(x) for x in c.must] or None,
            should=[self._condition(x) for x in c.should] or None,
            must_not=[self._condition(x) for x in c.must_not] or None,
        )

    def _delete(self, corpus: Corpus, where: Where | None) -> None:
        shard = self._shards.get(corpus)
        if shard is not None:
            shard.update(self._q.UpdateOperation.delete_points_by_filter(self._filter(where)))
            shard.flush()

    def _scroll(
        self, corpus: Corpus, fields: list[str] | bool, where: Where | None
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        shard = self._shards.get(corpus)
        if shard is None:
            return
        flt = self._filter(where)
        offset = None
        while True:
            records, offset = shard.scroll(
                self._q.ScrollRequest(offset=offset, limit=1024, filter=flt, with_payload=fields)
            )
            for r in records:
                yield str(r.id), r.payload or {}
            if offset is None:
                return
