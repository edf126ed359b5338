"""The embedded store on Qdrant Edge: the Qdrant engine (Rust) inside this process.

qdrant-client's local mode is pure Python: its sparse search walks every point in an
interpreter loop (about 40 ms per query at 1,400 passages, growing linearly). Qdrant
Edge runs the real engine in-process on a folder, with the same data model: named
dense vectors, sparse vectors with the IDF modifier, prefetch and RRF fusion, payload
filters. Each corpus is one Edge shard in ``<path>/<prefix>_<corpus>``; since a shard
has no collection metadata, the encoders that filled it are recorded beside it in
``encoders.json`` and checked on every open, as for a Qdrant collection.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.base import (
    DEFAULT_WORKSPACE,
    Corpus,
    EncoderInfo,
    Hit,
    Item,
    Scope,
    SparseVector,
    Vectors,
)
from retrieval.errors import StoreError
from retrieval.folder_lock import FolderLock
from retrieval.store import (
    DENSE,
    HASH_FIELDS,
    SPARSE,
    VISUAL,
    SearchMode,
    check_batch,
    check_encoders,
    cosine_relevance,
    encoder_metadata,
    hashes_by_source,
    item_from,
    payload_of,
    query_dense,
    serialised,
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


class EdgeStore:
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
        return self.root / f"{self.prefix}_{corpus.value}"

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
        request = self._q.CountRequest(exact=True, filter=self._filter(workspaces=workspaces))
        return int(shard.count(request))

    def counts(self, workspaces: Scope = None) -> dict[Corpus, int]:
        return {c: self.count(c, workspaces) for c in Corpus}

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
                        SPARSE: q.SparseVector(list(sparse[i].indices), list(sparse[i].values)),
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
        self._delete(
            corpus,
            self._filter(
                sources=[source],
                workspaces=[workspace],
                must_not=[self._match("content_hash", keep_hash)],
            ),
        )

    @serialised
    def delete_source(self, corpus: Corpus, source: str, workspaces: Scope = None) -> None:
        self._delete(corpus, self._filter(sources=[source], workspaces=workspaces))

    # -- reading -------------------------------------------------------------------

    @serialised
    def source_hashes(
        self, corpus: Corpus, workspaces: Scope = None, *, whole_files: bool = False
    ) -> dict[str, set[str]]:
        """See ``QdrantStore.source_hashes``."""
        flt = self._filter(workspaces=workspaces)
        return hashes_by_source(self._scroll(corpus, HASH_FIELDS, flt), whole_files=whole_files)

    @serialised
    def items_of(
        self, corpus: Corpus, source: str | None = None, workspaces: Scope = None
    ) -> list[Item]:
        flt = self._filter(sources=None if source is None else [source], workspaces=workspaces)
        return [item_from(corpus, pid, p) for pid, p in self._scroll(corpus, True, flt)]

    @serialised
    def search(
        self,
        corpus: Corpus,
        *,
        dense: Vectors | None = None,
        sparse: SparseVector | None = None,
        visual: Vectors | None = None,
        mode: SearchMode = "hybrid",
        limit: int = 10,
        prefetch_limit: int | None = None,
        sources: Sequence[str] | None = None,
        workspaces: Scope = None,
        rrf_k: int = 60,
        dense_weight: float = 1.0,
    ) -> list[Hit]:
        """Search one corpus (see ``QdrantStore.search`` for the fusion parameters)."""
        shard = self._shards.get(corpus)
        if shard is None:
            return []
        q = self._q
        flt = self._filter(sources=sources, workspaces=workspaces)
        dense_q = query_dense(mode, dense, sparse, visual)
        sparse_q = (
            q.SparseVector(list(sparse.indices), list(sparse.values))
            if sparse is not None and sparse.indices
            else None
        )
        try:
            if mode == "visual":
                request = q.QueryRequest(
                    limit=limit,
                    query=q.Query.Nearest(
                        np.asarray(visual, dtype=np.float32).ravel().tolist(), using=VISUAL
                    ),
                    filter=flt,
                    with_payload=True,
                    with_vector=[DENSE],
                )
            elif mode == "dense":
                assert dense_q is not None
                request = q.QueryRequest(
                    limit=limit,
                    query=q.Query.Nearest(dense_q.tolist(), using=DENSE),
                    filter=flt,
                    with_payload=True,
                )
            elif mode == "sparse":
                if sparse_q is None:
                    return []
                request = q.QueryRequest(
                    limit=limit,
                    query=q.Query.Nearest(sparse_q, using=SPARSE),
                    filter=flt,
                    with_payload=True,
                    with_vector=[DENSE],
                )
            else:
                assert dense_q is not None
                k = prefetch_limit or max(2 * limit, 50)
                prefetch = [
                    q.Prefetch(
                        limit=k, query=q.Query.Nearest(dense_q.tolist(), using=DENSE), filter=flt
                    )
                ]
                weights = [dense_weight]
                if sparse_q is not None:
                    prefetch.append(
                        q.Prefetch(
                            limit=k, query=q.Query.Nearest(sparse_q, using=SPARSE), filter=flt
                        )
                    )
                    weights.append(1.0)
                if visual is not None:
                    vq = np.asarray(visual, dtype=np.float32).ravel().tolist()
                    prefetch.append(
                        q.Prefetch(limit=k, query=q.Query.Nearest(vq, using=VISUAL), filter=flt)
                    )
                    weights.append(1.0)
                request = q.QueryRequest(
                    limit=limit,
                    prefetches=prefetch,
                    query=q.Fusion.Rrf(k=rrf_k, weights=weights),
                    with_payload=True,
                    with_vector=[DENSE],
                )
            points = shard.query(request)
        except Exception as e:
            raise StoreError(f"search in '{self._folder(corpus).name}' failed: {e}") from e
        return [
            Hit(
                item_from(corpus, p.id, p.payload or {}),
                float(p.score),
                float(p.score) if mode == "dense" else cosine_relevance(p.vector, dense_q),
            )
            for p in points
        ]

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

    def _match(self, key: str, value: str) -> Any:
        return self._q.FieldCondition(key=key, match=self._q.MatchValue(value))

    def _filter(
        self,
        sources: Sequence[str] | None = None,
        workspaces: Scope = None,
        must_not: Sequence[Any] = (),
    ) -> Any:
        """A read limited to some sources and workspaces (see ``store._filter``)."""
        q = self._q
        must: list[Any] = []
        if sources:
            must.append(q.FieldCondition(key="source", match=q.MatchAny(list(sources))))
        if workspaces is not None:
            wanted: Any = q.FieldCondition(key="workspace", match=q.MatchAny(list(workspaces)))
            if DEFAULT_WORKSPACE in workspaces:
                wanted = q.Filter(should=[wanted, q.IsEmptyCondition("workspace")])
            must.append(wanted)
        if not must and not must_not:
            return None
        return q.Filter(must=must or None, must_not=list(must_not) or None)

    def _delete(self, corpus: Corpus, flt: Any) -> None:
        shard = self._shards.get(corpus)
        if shard is not None:
            shard.update(self._q.UpdateOperation.delete_points_by_filter(flt))
            shard.flush()

    def _scroll(
        self, corpus: Corpus, fields: list[str] | bool, flt: Any
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        shard = self._shards.get(corpus)
        if shard is None:
            return
        offset = None
        while True:
            records, offset = shard.scroll(
                self._q.ScrollRequest(offset=offset, limit=1024, filter=flt, with_payload=fields)
            )
            for r in records:
                yield str(r.id), r.payload or {}
            if offset is None:
                return
