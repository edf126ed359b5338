"""Schemathesis against the published OpenAPI: generated requests find no server error.

Every operation gets 15 generated requests (hypothesis; ``MMRAG_FUZZ_EXAMPLES=200`` for a
deeper run); a 5xx fails the test.
The service is real (embedded Qdrant, MiniLM, the CNN) with a small corpus; the
generator is the real 0.5B model with very short answers, so asks stay cheap.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from app.api import create_app
from generation.llamacpp import LlamaCppGenerator
from ingest.images.describe import CnnImageAnalyzer
from retrieval.encoders import SentenceTransformerEncoder
from tests.helpers import make_service, write_pdf


@pytest.fixture(scope="module")
def api_schema(
    tmp_path_factory: pytest.TempPathFactory,
    encoder: SentenceTransformerEncoder,
    llm: LlamaCppGenerator,
) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("fuzz")
    docs = root / "docs"
    docs.mkdir()
    write_pdf(docs / "plant.pdf", [["The Zorblax reactor was commissioned in 1987."]])
    # max_tokens 8: the fuzzer checks the server's behaviour, not answer quality.
    # The in-process client sends Host "testserver"; a real server's default allowlist
    # (loopback names) is tested against uvicorn in tests/test_security.py.
    service = make_service(
        root,
        encoder,
        llm,
        CnnImageAnalyzer(),
        max_tokens=8,
        rate_limit_per_minute=0,
        allowed_hosts=["testserver"],
    )
    assert service.ingest([docs]).ok
    app = create_app(service)
    yield schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    service.close()


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=int(os.environ.get("MMRAG_FUZZ_EXAMPLES", "15")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors(case: Any) -> None:
    response = case.call(timeout=120)
    assert response.status_code < 500, (case.method, case.path, response.text[:300])
    if response.status_code >= 400:
        assert set(response.json()) == {"error"}  # one error shape, whatever went wrong
