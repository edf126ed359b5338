"""A CLIP-family encoder: texts and images in one joint vector space.

Why: the packaged CNN (``ingest.media.CnnImageEncoder``) gives visual features that
only compare images with images, and text questions reach pictures only through their
tags and OCR words. A CLIP-family model (CLIP, SigLIP, SigLIP 2) maps a text and an
image into the same space, so one model can fill the ``visual`` vector of the ``image``
and ``clip`` corpora (search by image, replacing the CNN features) and also encode a
question into that space (text->image and text->clip search). Tags and OCR text still
go into the text vectors as before; the joint-space vector is an addition.

Where the weights come from: nowhere on their own. A deployment that has a model
folder (``save_pretrained`` output of a ``transformers`` CLIP-family model with its
processor, e.g. ``openai/clip-vit-base-patch32`` copied from a machine with network
access) names it in the settings; it is loaded with ``local_files_only`` and the hub
switched off, like every model in mmrag.

Quality is unmeasured here: there are no CLIP weights on the development machine, so
the tests build a tiny randomly initialised CLIP and check the code path and shapes,
not retrieval quality.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.base import EncoderInfo, Vectors
from retrieval.errors import ModelError

# SigLIP was trained with text padded to the full length; CLIP with ordinary padding.
_PAD_TO_MAX_LENGTH = frozenset({"siglip", "siglip2"})
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


class ClipEncoder:
    """Images and texts into one joint space with a local CLIP-family model folder.

    ``model_dir`` is a folder written by ``save_pretrained`` holding the model (any
    ``transformers`` model with ``get_text_features`` and ``get_image_features``:
    CLIP, SigLIP, SigLIP 2) and its processor. The encoder is both an
    :class:`~retrieval.base.ImageEncoder` (``encode_images``) and a
    :class:`~retrieval.base.TextEncoder` (``encode``, the text tower): rows come back
    L2-normalised as float32 so a dot product equals the cosine, and a text vector can
    be compared with an image vector. ``info.version`` is a short hash of the config
    and of the weight files' names and sizes, so a collection notices a changed model.
    """

    def __init__(
        self,
        model_dir: Path | str,
        *,
        device: str = "cpu",
        batch_size: int = 16,
    ) -> None:
        path = Path(model_dir).expanduser()
        if not path.is_dir():
            raise ModelError(f"CLIP model folder not found: {path}")
        config_file = path / "config.json"
        if not config_file.is_file():
            raise ModelError(f"no model in the CLIP model folder {path} (config.json is missing)")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        # Models come from local folders only: never let a library try a model hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import torch
            import transformers
        except ImportError as e:  # pragma: no cover - core dependencies
            raise ModelError("transformers and torch are needed for the CLIP encoder") from e
        # Weight-loading progress bars would interleave with our own progress display.
        transformers.utils.logging.disable_progress_bar()
        try:
            model = transformers.AutoModel.from_pretrained(str(path), local_files_only=True)
            processor = transformers.AutoProcessor.from_pretrained(str(path), local_files_only=True)
        except Exception as e:
            raise ModelError(f"could not load the CLIP model from {path}: {e}") from e
        if not (hasattr(model, "get_text_features") and hasattr(model, "get_image_features")):
            raise ModelError(
                f"the model in {path} ({type(model).__name__}) is not a joint text-image "
                "model: it has no text and image towers"
            )
        config = model.config
        dim = _joint_dim(config)
        if dim is None:
            raise ModelError(f"the CLIP model at {path} does not report its projection dimension")
        self._torch = torch
        self._model = model.to(device).eval()
        self._processor = processor
        self._device = torch.device(device)
        self._pad_to_max = getattr(config, "model_type", "") in _PAD_TO_MAX_LENGTH
        # Truncate to what the text tower can embed, whatever the tokenizer's own limit.
        self._max_length: int | None = getattr(
            getattr(config, "text_config", None), "max_position_embeddings", None
        )
        self.batch_size = batch_size
        self.info = EncoderInfo(name=path.name, version=_version(path), dim=dim)

    def encode_images(self, images: Sequence[Any]) -> Vectors:
        """L2-normalised joint-space vectors of PIL images, one row per image."""
        rows: list[Vectors] = []
        for i in range(0, len(images), self.batch_size):
            batch = [_rgb(im) for im in images[i : i + self.batch_size]]
            inputs = self._processor(images=batch, return_tensors="pt")
            rows.append(self._features(self._model.get_image_features, inputs))
        return self._stack(rows)

    def encode(self, texts: Sequence[str], *, query: bool = False) -> Vectors:
        """The text tower: L2-normalised joint-space vectors, comparable with images.

        ``query`` is accepted for the TextEncoder protocol; CLIP encodes questions and
        passages alike.
        """
        padding: str | bool = "max_length" if self._pad_to_max else True
        rows: list[Vectors] = []
        for i in range(0, len(texts), self.batch_size):
            inputs = self._processor(
                text=list(texts[i : i + self.batch_size]),
                padding=padding,
                truncation=True,
                max_length=self._max_length,
                return_tensors="pt",
            )
            rows.append(self._features(self._model.get_text_features, inputs))
        return self._stack(rows)

    def _features(self, tower: Any, inputs: Any) -> Vectors:
        inputs = {k: v.to(self._device) for k, v in dict(inputs).items()}
        with self._torch.inference_mode():
            out = tower(**inputs)
        # transformers 5 returns an output whose pooler_output is projected; 4.x a tensor.
        features = out if isinstance(out, self._torch.Tensor) else out.pooler_output
        features = self._torch.nn.functional.normalize(features.float(), dim=-1)
        return np.asarray(features.cpu().numpy(), dtype=np.float32)

    def _stack(self, rows: list[Vectors]) -> Vectors:
        if not rows:
            return np.zeros((0, self.info.dim), dtype=np.float32)
        return np.concatenate(rows, axis=0)


def _rgb(image: Any) -> Any:
    return image if getattr(image, "mode", "RGB") == "RGB" else image.convert("RGB")


def _joint_dim(config: Any) -> int | None:
    """CLIP names its joint dimension ``projection_dim``; SigLIP has no projection."""
    dim = getattr(config, "projection_dim", None)
    if dim is None:
        text_config = getattr(config, "text_config", None)
        dim = getattr(text_config, "projection_size", None) or getattr(
            text_config, "hidden_size", None
        )
    return int(dim) if dim else None


def _version(path: Path) -> str:
    """A short hash of the config and of the weight files' names and sizes."""
    digest = hashlib.sha256()
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    config.pop("_name_or_path", None)
    digest.update(json.dumps(config, sort_keys=True).encode())
    for f in sorted(path.iterdir()):
        if f.is_file() and f.suffix in _WEIGHT_SUFFIXES:
            digest.update(f"{f.name}:{f.stat().st_size}".encode())
    return digest.hexdigest()[:12]
