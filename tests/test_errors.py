"""Errors reach clients with the status that says whose fault they are (issue 11).

A store that is down and a model that cannot load are our dependencies failing: 503
with the hint that fixes them, in the JSON body, in the SSE ``error`` event and in the
OpenAI stream alike, never ``400 bad_input``. Against a real uvicorn server.
"""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.api import create_app
from app.errors import ERROR_TABLE, classify
from app.service import Service
from app.settings import Settings
from ingest.images.describe import CnnImageAnalyzer
from retrieval.encoders import SentenceTransformerEncoder
from retrieval.errors import (
    GenerationError,
    LimitError,
    MmragError,
    ModelError,
    StoreError,
)
from tests.helpers import free_port, make_service, serve_in_thread


def sse_events(text: str) -> list[tuple[str, Any]]:
    events, name = [], ""
    for line in text.splitlines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[6:])))
    return events


def test_the_table_orders_specific_before_general() -> None:
    # A row never hides a later, more specific one: the table is read top down.
    kinds = [kind for kind, _, _ in ERROR_TABLE]
    for i, early in enumerate(kinds):
        for late in kinds[i + 1 :]:
            assert not issubclass(late, early), f"{late.__name__} is shadowed by {early.__name__}"
    assert classify(StoreError("down"))[:2] == (503, "store_unavailable")
    assert classify(ModelError("gone"))[:2] == (503, "model_unavailable")
    assert classify(GenerationError("timeout"))[:2] == (502, "llm_unavailable")
    assert classify(LimitError("too big"))[:2] == (400, "bad_input")
    assert classify(MmragError("bad"))[:2] == (400, "bad_input")
    status, code, message = classify(RuntimeError("/secret/path exploded"))
    assert (status, code) == (500, "internal") and "/secret" not in message


def test_a_store_that_is_down_is_503_with_its_hint(tmp_path: Path) -> None:
    # Nothing listens on this port: the configured Qdrant server is down.
    settings = Settings(data_dir=tmp_path / "data", qdrant_url=f"http://127.0.0.1:{free_port()}")
    service = Service(settings)
    with (
        serve_in_thread(create_app(service)) as url,
        httpx.Client(base_url=url, timeout=60) as http,
    ):
        for response in (http.get("/api/v1/corpora"), http.get("/ready")):
            assert response.status_code == 503, response.text
            message = response.json()["error"]["message"]
            assert "docker compose up -d qdrant" in message
            assert "MMRAG_QDRANT_URL" in message
        assert http.get("/api/v1/corpora").json()["error"]["code"] == "store_unavailable"

        streamed = http.post("/api/v1/ask", json={"question": "what is it?", "stream": True})
        assert streamed.status_code == 200  # the stream starts before the store is asked
        name, data = sse_events(streamed.text)[-1]
        assert name == "error" and data["code"] == "store_unavailable"
        assert "docker compose up -d qdrant" in data["message"]

        whole = http.post("/api/v1/ask", json={"question": "what is it?"})
        assert whole.status_code == 503
        assert whole.json()["error"]["code"] == "store_unavailable"


class _QdrantThatAnswersOnce(http.server.BaseHTTPRequestHandler):
    """Enough of Qdrant's REST API for a client to connect: its version and an empty
    collection list. Stopping it is the outage (no real server can run here)."""

    def do_GET(self) -> None:
        body = (
            {"result": {"collections": []}, "status": "ok", "time": 0.0}
            if self.path.startswith("/collections")
            else {"title": "qdrant", "version": "1.15.0"}
        )
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_store_that_goes_down_later_is_503_with_its_hint(tmp_path: Path) -> None:
    fake = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _QdrantThatAnswersOnce)
    threading.Thread(target=fake.serve_forever, daemon=True).start()
    settings = Settings(
        data_dir=tmp_path / "data", qdrant_url=f"http://127.0.0.1:{fake.server_port}"
    )
    service = Service(settings)
    assert service.store is not None  # connected while the server was up
    fake.shutdown()
    fake.server_close()
    with (
        serve_in_thread(create_app(service)) as url,
        httpx.Client(base_url=url, timeout=60) as http_client,
    ):
        response = http_client.get("/api/v1/corpora")
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error["code"] == "store_unavailable"
        assert "did not answer" in error["message"]
        assert "docker compose up -d qdrant" in error["message"]


def test_a_model_that_fails_to_load_is_503(
    tmp_path: Path, encoder: SentenceTransformerEncoder
) -> None:
    missing = tmp_path / "nowhere" / "model.gguf"
    # No generator given: it is built from the settings on first use, and fails.
    service = make_service(tmp_path, encoder, None, CnnImageAnalyzer(), llm_model_path=missing)
    with (
        serve_in_thread(create_app(service)) as url,
        httpx.Client(base_url=url, timeout=60) as http,
    ):
        whole = http.post("/api/v1/ask", json={"question": "Who built the reactor?"})
        assert whole.status_code == 503, whole.text
        error = whole.json()["error"]
        assert error["code"] == "model_unavailable"
        assert "no model file" in error["message"] and str(tmp_path) not in error["message"]

        streamed = http.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "Who?"}], "stream": True},
        )
        chunks = [
            json.loads(line[6:])
            for line in streamed.text.splitlines()
            if line.startswith("data: {")
        ]
        assert chunks[-1]["error"]["code"] == "model_unavailable"
        # The server still answers what needs no model.
        assert http.get("/api/v1/corpora").status_code == 200


@pytest.fixture(autouse=True)
def _no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MMRAG_API_KEYS", raising=False)


def test_rate_limits_count_in_the_configured_storage() -> None:
    from app.security import RateLimiter
    from retrieval.errors import ConfigError

    limiter = RateLimiter(2, "memory://", "requests")
    assert limiter.blocked("a") is None  # testing does not count
    assert limiter.check("a") is None and limiter.check("a") is None
    wait = limiter.check("a")
    assert wait is not None and 0 < wait <= 60
    assert limiter.check("b") is None  # another client has its own window
    assert RateLimiter(2, "memory://", "renders").check("a") is None  # its own storage
    with pytest.raises(ConfigError, match="MMRAG_RATE_LIMIT_STORAGE"):
        RateLimiter(2, "nosuch://host", "requests")
