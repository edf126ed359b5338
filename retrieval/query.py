"""A search of one corpus, planned once for every engine.

Both stores run the same query, so it is decided here, in plain values:

1. **Which ranked lists** (:class:`Nearest`): the points nearest to the query in the
   ``dense``, ``sparse`` or ``visual`` vector. A hybrid search prefetches dense, sparse
   (unless the question has no indexed term) and visual (when an image or a joint
   text-image vector is given), each ``prefetch_limit`` deep (default: twice the limit,
   at least 50).
2. **How to fuse them** (:class:`Rrf`): reciprocal rank fusion with ``k`` and one weight
   per list (``dense_weight`` for the dense one, 1 for the others).
3. **Which points may appear** (:class:`Where`): the sources and workspaces of the read,
   applied to every list; see :func:`scope` for the workspace rule.
4. **How relevant a hit is**: a dense search's score already is the cosine; every other
   search fetches the hit's stored dense vector to compute it (fused scores are ranks).

:func:`plan_search` turns a search request into a :class:`QueryPlan`; a store only
translates the plan into its engine's objects (``retrieval/store.py`` for qdrant-client,
``retrieval/edge_store.py`` for Qdrant Edge), so the two cannot drift apart, and
tests/test_store_congruence.py checks that they return the same hits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np

from retrieval.base import DEFAULT_WORKSPACE, Scope, SearchMode, SparseVector, Vectors
from retrieval.schema import DENSE, SPARSE, VISUAL, VectorName, flat

# -- filters -----------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    """The payload field ``key`` holds one of ``values``."""

    key: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class IsEmpty:
    """The payload field ``key`` is missing, null or an empty list."""

    key: str


@dataclass(frozen=True)
class Where:
    """A payload filter: all of ``must``, at least one of ``should`` (when there are
    any), none of ``must_not``. Conditions nest, as in Qdrant's own filters."""

    must: tuple[Condition, ...] = ()
    should: tuple[Condition, ...] = ()
    must_not: tuple[Condition, ...] = ()


Condition: TypeAlias = "Match | IsEmpty | Where"


def scope(
    sources: Sequence[str] | None = None,
    workspaces: Scope = None,
    *,
    except_hash: str | None = None,
) -> Where | None:
    """The filter of a read (or delete) limited to some sources and workspaces; None when
    it reads everything.

    No ``sources`` (None or empty) means all of them; ``workspaces`` None means all, an
    empty list none. Items stored before workspaces existed carry no workspace: they are
    the default workspace's, so a scope that holds it also takes them. ``except_hash``
    leaves out the items made from that version of their file.
    """
    must: list[Condition] = []
    if sources:
        must.append(Match("source", tuple(sources)))
    if workspaces is not None:
        wanted: Condition = Match("workspace", tuple(workspaces))
        if DEFAULT_WORKSPACE in workspaces:
            wanted = Where(should=(wanted, IsEmpty("workspace")))
        must.append(wanted)
    must_not = () if except_hash is None else (Match("content_hash", (except_hash,)),)
    if not must and not must_not:
        return None
    return Where(must=tuple(must), must_not=must_not)


# -- the plan ----------------------------------------------------------------------


@dataclass(frozen=True)
class Nearest:
    """One ranked list: the ``limit`` points whose ``using`` vector is nearest to
    ``vector`` (a dense vector as floats, or a sparse one)."""

    using: VectorName
    vector: tuple[float, ...] | SparseVector
    limit: int


@dataclass(frozen=True)
class Rrf:
    """Reciprocal rank fusion of the lists: ``k`` is RRF's constant, ``weights`` one per
    list (a weight divides its list's ranks, Qdrant's weighting)."""

    k: int
    weights: tuple[float, ...]


@dataclass(frozen=True)
class QueryPlan:
    """Everything a store needs to search one corpus, in no engine's types.

    Without ``fusion`` the one list in ``nearest`` is the search itself (its limit is
    ``limit``); with it, the lists are prefetched and fused, and ``limit`` points of the
    fused list are returned. ``where`` applies to every list. Payloads always come back;
    the stored dense vector only when ``with_dense`` (to compute :meth:`relevance`).
    """

    nearest: tuple[Nearest, ...]
    fusion: Rrf | None
    where: Where | None
    limit: int
    dense: tuple[float, ...] | None = None
    """The question's dense vector, when known: the other side of the cosine."""
    score_is_cosine: bool = False

    @property
    def with_dense(self) -> bool:
        return not self.score_is_cosine and self.dense is not None

    def relevance(self, score: float, vectors: Any) -> float | None:
        """The cosine of the question and a hit (its engine ``score``; the named
        ``vectors`` it came back with), when it can be known."""
        if self.score_is_cosine:
            return score
        if self.dense is None or not isinstance(vectors, dict) or DENSE not in vectors:
            return None
        stored = np.asarray(vectors[DENSE], dtype=np.float32)
        return float(np.dot(stored, np.asarray(self.dense, dtype=np.float32)))


def plan_search(
    mode: SearchMode,
    *,
    dense: Vectors | None = None,
    sparse: SparseVector | None = None,
    visual: Vectors | None = None,
    limit: int = 10,
    prefetch_limit: int | None = None,
    sources: Sequence[str] | None = None,
    workspaces: Scope = None,
    rrf_k: int = 60,
    dense_weight: float = 1.0,
) -> QueryPlan | None:
    """The plan of a ``Store.search`` (same arguments, see its docstring); None when
    there is nothing to search for (a sparse search for a question without an indexed
    term). Raises ValueError when ``mode`` lacks a query vector it needs."""
    if mode == "visual" and visual is None:
        raise ValueError("visual search needs a visual query vector")
    if mode in ("hybrid", "dense") and dense is None:
        raise ValueError(f"{mode} search needs a dense query vector")
    if mode in ("hybrid", "sparse") and sparse is None:
        raise ValueError(f"{mode} search needs a sparse query vector")
    dense_q = None if dense is None else tuple(flat(dense))
    # A question of stop words only has no sparse list to search.
    sparse_q = sparse if sparse is not None and sparse.indices else None
    where = scope(sources, workspaces)
    fusion = None
    if mode == "visual":
        assert visual is not None
        lists = [Nearest(VISUAL, tuple(flat(visual)), limit)]
    elif mode == "dense":
        assert dense_q is not None
        lists = [Nearest(DENSE, dense_q, limit)]
    elif mode == "sparse":
        if sparse_q is None:
            return None
        lists = [Nearest(SPARSE, sparse_q, limit)]
    else:
        assert dense_q is not None
        k = prefetch_limit or max(2 * limit, 50)
        lists = [Nearest(DENSE, dense_q, k)]
        weights = [dense_weight]
        if sparse_q is not None:
            lists.append(Nearest(SPARSE, sparse_q, k))
            weights.append(1.0)
        if visual is not None:
            lists.append(Nearest(VISUAL, tuple(flat(visual)), k))
            weights.append(1.0)
        fusion = Rrf(rrf_k, tuple(weights))
    return QueryPlan(
        tuple(lists), fusion, where, limit, dense=dense_q, score_is_cosine=mode == "dense"
    )
