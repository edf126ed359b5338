"""Shared fixtures: real packaged models, loaded once per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from generation.llamacpp import LlamaCppGenerator, ensure_gguf
from retrieval.base import Store
from retrieval.edge_store import EdgeStore
from retrieval.encoders import SentenceTransformerEncoder
from retrieval.index import Index
from retrieval.store import QdrantStore


@pytest.fixture(scope="session")
def gguf_path() -> Path:
    """The packaged Qwen2.5-Coder-0.5B GGUF, verified.

    Assembled once into ``$MMRAG_TEST_MODELS_DIR`` (default ``~/.cache/mmrag-test/models``)
    and reused by later runs; the sha256 is checked on the first run only (sidecar).
    """
    default = Path.home() / ".cache" / "mmrag-test" / "models"
    models_dir = Path(os.environ.get("MMRAG_TEST_MODELS_DIR", default))
    return ensure_gguf(models_dir, verify=True)


@pytest.fixture(scope="session")
def llm(gguf_path: Path) -> LlamaCppGenerator:
    """The real llama.cpp generator on the packaged model (4096-token window, 2 threads)."""
    return LlamaCppGenerator(gguf_path)


@pytest.fixture(scope="session")
def encoder() -> SentenceTransformerEncoder:
    """The real packaged all-MiniLM-L6-v2, loaded once per session."""
    return SentenceTransformerEncoder()


@pytest.fixture(params=["edge", "local"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh embedded store, once per engine: every test that uses it is a
    conformance test of both backends (Qdrant Edge in a folder; qdrant-client's
    local mode in memory)."""
    s: Store = EdgeStore(tmp_path / "edge") if request.param == "edge" else QdrantStore(memory=True)
    yield s
    s.close()


@pytest.fixture()
def index(store: Store, encoder: SentenceTransformerEncoder) -> Index:
    """A fresh index on each embedded engine with the real encoder."""
    return Index(store, encoder)


# --- browser suites (tests/test_browser*.py) ----------------------------------------------

CHROMIUM = "/usr/bin/chromium"  # Debian's; Playwright never downloads a browser here
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's chromium driven by Playwright, one per session."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()
