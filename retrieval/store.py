"""The Qdrant store through qdrant-client: a server, or qdrant-client's local mode.

The same class opens an embedded Qdrant folder (``path``), an in-memory instance (for
tests) or a Qdrant server (``url``); the choice is made once, in the constructor.
Collections have the shape of :mod:`retrieval.schema`, and searches run the plan of
:mod:`retrieval.query`: this module only translates both into qdrant-client's models
(:func:`_filter`, :meth:`QdrantStore._run`).
"""

from __future__ import annotations

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
from retrieval.errors import ConfigError, StoreError
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

_UPSERT_BATCH = 256


SERVER_HINT = (
    "is the Qdrant server running? Start it (docker compose up -d qdrant) "
    "or unset MMRAG_QDRANT_URL to use the embedded store"
)


class QdrantStore(Engine):
    """Collections of items, searched dense, sparse or hybrid (prefetch both, fuse by RRF).

    Give exactly one of ``path`` (embedded, a local folder: one process at a time),
    ``url`` (a Qdrant server or cluster) or ``memory=True``. ``prefix`` namespaces the
    collections so several deployments can share one server.
    """

    def __init__(
        self,
        *,
        path: Path | str | None = None,
        url: str | None = None,
        api_key: str | None = None,
        memory: bool = False,
        prefix: str = "mmrag",
        timeout: int = 30,
        shards: int | None = None,
        replication: int | None = None,
    ) -> None:
        chosen = [n for n, v in (("path", path), ("url", url), ("memory", memory)) if v]
        if len(chosen) != 1:
            raise ConfigError(
                "give exactly one of a Qdrant path (embedded), url (server) or memory=True; "
                f"got {', '.join(chosen) or 'none'}"
            )
        from qdrant_client import QdrantClient

        self.prefix = prefix
        self.remote = url is not None
        # A cluster spreads each collection over ``shards`` with ``replication`` copies;
        # both apply when a collection is created (server only; None: Qdrant's default).
        self.shards, self.replication = shards, replication
        # An embedded folder is locked before qdrant-client touches it (see FolderLock).
        self.lock = FolderLock(path) if path else None
        self._mutex = None if url else threading.RLock()
        try:
            if url:
                self._client = QdrantClient(url=url, api_key=api_key, timeout=timeout)
                self._client.get_collections()  # fail now, not at the first search
            elif path:
                self._client = QdrantClient(path=str(path))
            else:
                self._client = QdrantClient(location=":memory:")
        except Exception as e:
            if self.lock is not None:
                self.lock.release()
            where = url or path or "memory"
            hint = ""
            if "already accessed" in str(e):
                hint = (
                    ": another mmrag process has this data folder open (embedded Qdrant "
                    "allows one process per folder); stop it, or run a Qdrant server and "
                    "set MMRAG_QDRANT_URL"
                )
            elif url:
                hint = f": {SERVER_HINT}"
            raise StoreError(f"cannot open the Qdrant store at {where}{hint} ({e})") from e
        self._known: dict[Corpus, tuple[EncoderInfo, EncoderInfo, EncoderInfo | None]] = {}

    def outage(self, error: Exception) -> StoreError | None:
        import httpx
        from qdrant_client.http.exceptions import ResponseHandlingException

        if self.remote and isinstance(
            error, httpx.TransportError | ResponseHandlingException | ConnectionError
        ):
            return StoreError(f"the Qdrant server did not answer: {SERVER_HINT} ({error})")
        return None

    # -- collections ---------------------------------------------------------------

    @serialised
    def exists(self, corpus: Corpus) -> bool:
        return bool(self._client.collection_exists(self.collection(corpus)))

    @serialised
    def ensure(
        self,
        corpus: Corpus,
        dense: EncoderInfo,
        sparse: EncoderInfo,
        visual: EncoderInfo | None = None,
    ) -> None:
        """Create the corpus' collection, or check that it was filled by these encoders.

        ``visual`` (image and clip corpora) adds a ``visual`` named vector of its size.
        """
        if self._known.get(corpus) == (dense, sparse, visual):
            return
        from qdrant_client import models

        name = self.collection(corpus)
        wanted = encoder_metadata(dense, sparse, visual)
        if self._client.collection_exists(name):
            meta = self._client.get_collection(name).config.metadata or {}
            check_encoders(corpus, name, meta, dense, sparse, visual)
        else:
            cosine = models.Distance.COSINE
            vectors = {DENSE: models.VectorParams(size=dense.dim, distance=cosine)}
            if visual is not None:
                vectors[VISUAL] = models.VectorParams(size=visual.dim, distance=cosine)
            self._client.create_collection(
                name,
                vectors_config=vectors,
                sparse_vectors_config={
                    SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)
                },
                metadata=wanted,
                shard_number=self.shards if self.remote else None,
                replication_factor=self.replication if self.remote else None,
            )
            if self.remote:
                # Filters on these fields run on every ingest; the server indexes them.
                for field in ("source", "content_hash", "parent_id"):
                    self._client.create_payload_index(name, field, models.PayloadSchemaType.KEYWORD)
                # Every read filters on it: Qdrant keeps each tenant's points together.
                self._client.create_payload_index(
                    name,
                    "workspace",
                    models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True),
                )
        self._known[corpus] = (dense, sparse, visual)

    @serialised
    def count(self, corpus: Corpus, workspaces: Scope = None) -> int:
        if not self.exists(corpus):
            return 0
        flt = _filter(scope(workspaces=workspaces))
        return int(self._client.count(self.collection(corpus), count_filter=flt, exact=True).count)

    # -- writing -------------------------------------------------------------------

    @serialised
    def upsert(
        self,
        items: Sequence[Item],
        dense: Vectors,
        sparse: Sequence[SparseVector],
        visual: Sequence[Vectors | None] | None = None,
    ) -> None:
        """Store items of one corpus with their vectors (same order, same length)."""
        corpus = check_batch(items, dense, sparse, visual)
        if corpus is None:
            return
        from qdrant_client import models

        name = self.collection(corpus)
        for start in range(0, len(items), _UPSERT_BATCH):
            batch = range(start, min(start + _UPSERT_BATCH, len(items)))
            points = [
                models.PointStruct(
                    id=items[i].id,
                    vector={
                        DENSE: dense[i].tolist(),
                        SPARSE: _sparse(sparse[i]),
                        **visual_part(visual, i),
                    },
                    payload=payload_of(items[i]),
                )
                for i in batch
            ]
            self._client.upsert(name, points=points, wait=True)

    @serialised
    def delete_stale(
        self, corpus: Corpus, source: str, keep_hash: str, workspace: str = DEFAULT_WORKSPACE
    ) -> None:
        """Remove the items of ``source`` (in ``workspace``) that were not made from the
        ``keep_hash`` version."""
        self._delete(corpus, scope([source], [workspace], except_hash=keep_hash))

    @serialised
    def delete_source(self, corpus: Corpus, source: str, workspaces: Scope = None) -> None:
        self._delete(corpus, scope([source], workspaces))

    # -- reading -------------------------------------------------------------------

    @serialised
    def source_hashes(
        self, corpus: Corpus, workspaces: Scope = None, *, whole_files: bool = False
    ) -> dict[str, set[str]]:
        """Every source in the corpus (of ``workspaces``) with the content hashes its items
        carry; with ``whole_files``, only items without a parent count (a document, a
        video, an image file: the item stored last, which marks a file as completely
        stored)."""
        points = self._scroll(corpus, HASH_FIELDS, scope(workspaces=workspaces))
        return hashes_by_source(points, whole_files=whole_files)

    @serialised
    def items_of(
        self, corpus: Corpus, source: str | None = None, workspaces: Scope = None
    ) -> list[Item]:
        """The items of ``source`` (of ``workspaces``) in the corpus; all when None."""
        where = scope(None if source is None else [source], workspaces)
        return [item_from(corpus, pid, p) for pid, p in self._scroll(corpus, True, where)]

    @serialised
    def close(self) -> None:
        try:
            self._client.close()
        finally:
            if self.lock is not None:
                self.lock.release()

    # -- internals -----------------------------------------------------------------

    def _run(self, corpus: Corpus, plan: QueryPlan) -> Sequence[ScoredPoint]:
        from qdrant_client import models

        flt = _filter(plan.where)
        with_vectors = [DENSE] if plan.with_dense else False
        name = self.collection(corpus)
        if plan.fusion is None:
            (only,) = plan.nearest
            res = self._client.query_points(
                name,
                query=_query(only),
                using=only.using,
                limit=plan.limit,
                query_filter=flt,
                with_vectors=with_vectors,
            )
        else:
            rrf = models.Rrf(k=plan.fusion.k, weights=list(plan.fusion.weights))
            res = self._client.query_points(
                name,
                prefetch=[
                    models.Prefetch(query=_query(n), using=n.using, limit=n.limit, filter=flt)
                    for n in plan.nearest
                ],
                query=models.RrfQuery(rrf=rrf),
                limit=plan.limit,
                with_vectors=with_vectors,
            )
        return res.points

    def _delete(self, corpus: Corpus, where: Where | None) -> None:
        from qdrant_client import models

        if not self.exists(corpus):
            return
        selector = models.FilterSelector(filter=_filter(where))
        self._client.delete(self.collection(corpus), points_selector=selector, wait=True)

    def _scroll(
        self, corpus: Corpus, fields: list[str] | bool, where: Where | None
    ) -> Iterator[tuple[Any, dict[str, Any]]]:
        if not self.exists(corpus):
            return
        offset = None
        while True:
            points, offset = self._client.scroll(
                self.collection(corpus),
                scroll_filter=_filter(where),
                limit=1024,
                offset=offset,
                with_payload=fields,
                with_vectors=False,
            )
            for p in points:
                yield p.id, p.payload or {}
            if offset is None:
                return


def _sparse(vector: SparseVector) -> Any:
    from qdrant_client import models

    return models.SparseVector(indices=list(vector.indices), values=list(vector.values))


def _query(nearest: Nearest) -> Any:
    """The query vector of one list, as qdrant-client takes it."""
    v = nearest.vector
    return _sparse(v) if isinstance(v, SparseVector) else list(v)


def _filter(where: Where | None) -> Any:
    """A neutral filter (:func:`retrieval.query.scope`) as a qdrant-client ``Filter``."""
    return None if where is None else _condition(where)


def _condition(c: Condition) -> Any:
    from qdrant_client import models

    if isinstance(c, Match):
        return models.FieldCondition(key=c.key, match=models.MatchAny(any=list(c.values)))
    if isinstance(c, IsEmpty):
        return models.IsEmptyCondition(is_empty=models.PayloadField(key=c.key))
    return models.Filter(
        must=[_condition(x) for x in c.must] or None,
        should=[_condition(x) for x in c.should] or None,
        must_not=[_condition(x) for x in c.must_not] or None,
    )
