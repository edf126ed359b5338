"""The REST API over a real service: embedded Qdrant, MiniLM, the packaged CNN and the
0.5B LLM; every endpoint, auth, rate limit, uploads, range requests, SSE framing, the
OpenAI-compatible endpoint (driven by the official openai client)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import openai
import pytest
from fastapi.testclient import TestClient

from app.api import create_app
from app.security import MediaLinks
from app.service import Service
from app.ui import mount_ui as with_ui
from generation.llamacpp import LlamaCppGenerator
from generation.openai_compat import OpenAIGenerator
from ingest.images.describe import CnnImageAnalyzer
from retrieval.encoders import SentenceTransformerEncoder
from tests.helpers import LOCAL, QUAY, free_port, make_service, scanned_pdf, write_pdf

ROCKET = Path(__file__).resolve().parents[2] / "shared/eval/images/skimage/images/rocket.jpg"


@pytest.fixture(scope="module")
def analyzer() -> CnnImageAnalyzer:
    return CnnImageAnalyzer()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    docs = tmp_path_factory.mktemp("api-docs")
    write_pdf(
        docs / "plant.pdf",
        [["Intro page."], ["The Zorblax reactor was commissioned in 1987 in Tromsø."]],
    )
    if ROCKET.is_file():
        shutil.copy(ROCKET, docs / "rocket.jpg")
    return docs


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory,
    encoder: SentenceTransformerEncoder,
    llm: LlamaCppGenerator,
    analyzer: CnnImageAnalyzer,
    corpus: Path,
) -> Iterator[Service]:
    # No rate limit here: polling jobs adds up over the module (the limit has its own test).
    svc = make_service(
        tmp_path_factory.mktemp("api"),
        encoder,
        llm,
        analyzer,
        max_upload_mb=1,
        rate_limit_per_minute=0,
    )
    assert svc.ingest([corpus]).ok
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def client(service: Service) -> Iterator[TestClient]:
    with TestClient(create_app(service), base_url=LOCAL) as c:
        yield c


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    assert body["error"]["message"]
    return dict(body["error"])


def events(text: str) -> list[tuple[str, Any]]:
    """Parse an event stream strictly: every event is 'event:' + 'data:' + blank line."""
    out = []
    assert text.endswith("\n\n")
    for block in text.strip("\n").split("\n\n"):
        lines = block.split("\n")
        assert len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: ")
        out.append((lines[0][7:], json.loads(lines[1][6:])))
    return out


# --- health, corpora ------------------------------------------------------------------------


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready["status"] == "ready" and ready["items"] > 0


def test_corpora_lists_counts(client: TestClient) -> None:
    counts = client.get("/api/v1/corpora").json()["corpora"]
    assert counts["paragraph"] >= 2 and counts["document"] == 1 and counts["image"] == 1


def test_openapi_is_published(client: TestClient) -> None:
    spec = client.get("/api/v1/openapi.json").json()
    assert {"/api/v1/ask", "/api/v1/ingest", "/v1/chat/completions"} <= set(spec["paths"])


# --- ask ----------------------------------------------------------------------------------


def test_ask_returns_answer_route_sources_and_timings(client: TestClient) -> None:
    r = client.post("/api/v1/ask", json={"question": "When was the Zorblax reactor commissioned?"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert "1987" in body["answer"]
    assert body["route"]["corpora"] == ["paragraph"] and body["route"]["scores"]["paragraph"] > 0.5
    top = body["sources"][0]
    assert Path(top["source"]).name == "plant.pdf" and top["page"] == 2 and top["cited"]
    assert top["media"]["page_image"].startswith("/api/v1/page?path=")
    assert body["timings"]["total_ms"] > 0


def test_ask_streams_server_sent_events(client: TestClient) -> None:
    question = {"question": "When was the Zorblax reactor commissioned?", "stream": True}
    with client.stream("POST", "/api/v1/ask", json=question) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        text = "".join(r.iter_text())
    stream = events(text)
    kinds = [k for k, _ in stream]
    assert kinds[0] == "route" and kinds[1] == "sources" and kinds[-1] == "done"
    assert kinds.count("token") > 3  # streamed, not in one piece
    tokens = "".join(d["text"] for k, d in stream if k == "token")
    assert tokens == stream[-1][1]["answer"]


@pytest.mark.skipif(not ROCKET.is_file(), reason="../shared/eval images are absent")
def test_ask_with_an_image_searches_by_its_pixels(client: TestClient) -> None:
    with ROCKET.open("rb") as f:
        r = client.post(
            "/api/v1/ask/image",
            data={"question": "What is this?"},
            files={"image": ("photo.jpg", f, "image/jpeg")},
        )
    assert r.status_code == 200, r.text
    body = r.json()
    assert "image" in body["route"]["corpora"]
    image = next(s for s in body["sources"] if s["corpus"] == "image")
    assert Path(image["source"]).name == "rocket.jpg"
    assert image["media"]["thumbnail"].startswith("/api/v1/media?path=")


def test_bad_questions_are_422_in_one_shape(client: TestClient) -> None:
    assert_error(client.post("/api/v1/ask", json={"question": ""}), 422, "invalid_request")
    assert_error(client.post("/api/v1/ask", json={"q": "x"}), 422, "invalid_request")
    assert_error(
        client.post("/api/v1/ask", json={"question": "x", "corpora": ["tv"]}),
        422,
        "invalid_request",
    )
    assert_error(client.get("/api/v1/nothing-here"), 404, "not_found")


# --- OpenAI-compatible ------------------------------------------------------------------------


def test_openai_client_gets_an_answer_with_sources(client: TestClient) -> None:
    oa = openai.OpenAI(base_url=f"{LOCAL}/v1", api_key="none", http_client=client)
    reply = oa.chat.completions.create(
        model="mmrag",
        messages=[{"role": "user", "content": "When was the Zorblax reactor commissioned?"}],
    )
    assert "1987" in (reply.choices[0].message.content or "")
    sources = reply.model_extra["sources"] if reply.model_extra else []
    assert Path(sources[0]["source"]).name == "plant.pdf"
    chunks = list(
        oa.chat.completions.create(
            model="mmrag",
            messages=[{"role": "user", "content": "When was the Zorblax reactor commissioned?"}],
            stream=True,
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "1987" in text and len(chunks) > 3
    assert chunks[-1].choices[0].finish_reason == "stop"


# --- ingest -----------------------------------------------------------------------------------


def wait_for_job(
    client: TestClient, job_id: str, deadline_s: float = 120, seen: list[float] | None = None
) -> dict[str, Any]:
    """Poll a job until it ends; ``seen`` collects the progress values observed."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if seen is not None:
            seen.append(job["progress"])
        if job["status"] in ("done", "failed"):
            return dict(job)
        time.sleep(0.2)  # polling a job, as a client would; not a timing assertion
    raise AssertionError(f"job {job_id} did not finish within {deadline_s} s")


def test_upload_ingests_as_a_job_with_progress(client: TestClient, tmp_path: Path) -> None:
    note = tmp_path / "orchard.md"
    note.write_text("# Orchard\n\nThe Kvistad orchard grows 41 kinds of apple.\n", encoding="utf-8")
    with note.open("rb") as f:
        r = client.post("/api/v1/ingest", files=[("files", ("orchard.md", f, "text/markdown"))])
    assert r.status_code == 202, r.text
    job = wait_for_job(client, r.json()["id"])
    assert job["status"] == "done" and job["progress"] == 1.0, job
    assert [(f["path"], f["status"]) for f in job["files"]] == [("orchard.md", "added")]
    body = client.post(
        "/api/v1/ask", json={"question": "How many kinds of apple grow in the Kvistad orchard?"}
    ).json()
    assert any(Path(s["source"]).name == "orchard.md" for s in body["sources"])
    assert_error(client.get("/api/v1/jobs/nope"), 404, "not_found")


def test_an_uploaded_file_name_cannot_escape_or_break_the_upload_folder(
    client: TestClient,
) -> None:
    # A directory part, a NUL and a name longer than the file system allows: the file is
    # still ingested, under a safe base name that keeps its type.
    name = "../../" + "q" * 300 + "\x00.md"
    body = b"# Quay\n\nThe Brattli quay is 212 metres long.\n"
    r = client.post("/api/v1/ingest", files=[("files", (name, body, "text/markdown"))])
    assert r.status_code == 202, r.text
    job = wait_for_job(client, r.json()["id"])
    assert job["status"] == "done", job
    (saved,) = job["files"]
    assert saved["status"] == "added" and saved["path"] == "q" * 197 + ".md"


def test_a_scanned_upload_reports_progress_within_the_file(
    client: TestClient, tmp_path: Path
) -> None:
    scan = scanned_pdf(tmp_path / "quay-scan.pdf", [QUAY, QUAY[1:]]).read_bytes()
    r = client.post("/api/v1/ingest", files=[("files", ("quay-scan.pdf", scan, "application/pdf"))])
    assert r.status_code == 202, r.text
    seen: list[float] = []
    job = wait_for_job(client, r.json()["id"], seen=seen)
    assert job["status"] == "done", job
    assert "2 of 2 pages read by OCR" in job["files"][0]["detail"]
    # One file, two pages read one after the other: progress moved before the file ended.
    assert any(0 < p < 1 for p in seen), seen


def test_upload_too_large_and_unsupported_type_are_refused(client: TestClient) -> None:
    big = b"a" * (1024 * 1024 + 10)
    assert_error(
        client.post("/api/v1/ingest", files=[("files", ("big.txt", big, "text/plain"))]),
        413,
        "too_large",
    )
    bad = client.post(
        "/api/v1/ingest", files=[("files", ("virus.exe", b"MZ", "application/octet-stream"))]
    )
    assert "'.exe'" in assert_error(bad, 415, "unsupported_type")["message"]


def test_delete_source(client: TestClient, tmp_path: Path) -> None:
    note = tmp_path / "gone.md"
    note.write_text("# Gone\n\nThis note will be deleted.\n", encoding="utf-8")
    with note.open("rb") as f:
        job = client.post(
            "/api/v1/ingest", files=[("files", ("gone.md", f, "text/markdown"))]
        ).json()
    wait_for_job(client, job["id"])
    before = client.get("/api/v1/corpora").json()["corpora"]["document"]
    stored = next(
        s["source"]
        for s in client.post(
            "/api/v1/ask", json={"question": "Which note will be deleted?"}
        ).json()["sources"]
        if s["source"].endswith("gone.md")
    )
    listed = client.get("/api/v1/sources", params={"limit": 1000}).json()
    entry = next(x for x in listed["sources"] if x["source"] == stored)
    assert entry["corpora"] == ["document"] and entry["on_disk"] is True
    assert client.delete("/api/v1/sources", params={"source": stored}).json()["deleted"]
    assert client.get("/api/v1/corpora").json()["corpora"]["document"] == before - 1
    assert_error(client.delete("/api/v1/sources", params={"source": stored}), 404, "not_found")
    after = client.get("/api/v1/sources", params={"limit": 1000}).json()
    assert after["total"] == listed["total"] - 1
    assert stored not in [x["source"] for x in after["sources"]]


def test_sources_are_listed_by_page(client: TestClient, corpus: Path) -> None:
    everything = client.get("/api/v1/sources", params={"limit": 1000}).json()
    names = [Path(x["source"]).name for x in everything["sources"]]
    assert "plant.pdf" in names and everything["total"] == len(names)
    assert [x["source"] for x in everything["sources"]] == sorted(
        x["source"] for x in everything["sources"]
    )
    if ROCKET.is_file():
        rocket = next(x for x in everything["sources"] if x["source"].endswith("rocket.jpg"))
        assert rocket["corpora"] == ["image"]
    second = client.get("/api/v1/sources", params={"limit": 1, "offset": 1}).json()
    assert second["total"] == everything["total"]
    assert second["sources"] == everything["sources"][1:2]
    assert_error(client.get("/api/v1/sources", params={"limit": 0}), 422, "invalid_request")


# --- media ------------------------------------------------------------------------------------


def test_media_is_served_with_ranges_and_only_for_the_index(
    client: TestClient, corpus: Path, service: Service
) -> None:
    pdf = str((corpus / "plant.pdf").resolve())
    full = client.get("/api/v1/media", params={"path": pdf})
    assert full.status_code == 200 and full.content.startswith(b"%PDF")
    assert full.headers["accept-ranges"] == "bytes"
    part = client.get("/api/v1/media", params={"path": pdf}, headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and len(part.content) == 100
    assert part.headers["content-range"] == f"bytes 0-99/{len(full.content)}"
    assert part.content == full.content[:100]
    assert_error(client.get("/api/v1/media", params={"path": "/etc/passwd"}), 404, "not_found")
    sneaky = str(service.settings.data_dir / "media" / ".." / ".." / "store")
    assert_error(client.get("/api/v1/media", params={"path": sneaky}), 404, "not_found")
    # A NUL byte (found by schemathesis) is the client's error, not a crash in resolve().
    nul = {"path": pdf + "\x00", "page": 1}
    assert_error(client.get("/api/v1/page", params=nul), 422, "invalid_request")
    page = client.get("/api/v1/page", params={"path": pdf, "page": 2})
    assert page.status_code == 200 and page.content.startswith(b"\x89PNG")
    assert_error(client.get("/api/v1/page", params={"path": pdf, "page": 9}), 404, "not_found")


# --- auth, rate limit, origins, a server that is down ------------------------------------------


@pytest.fixture()
def guarded(
    tmp_path: Path,
    encoder: SentenceTransformerEncoder,
    llm: LlamaCppGenerator,
    analyzer: CnnImageAnalyzer,
) -> Iterator[TestClient]:
    svc = make_service(
        tmp_path,
        encoder,
        llm,
        analyzer,
        api_keys=["k-one", "k-two"],
        rate_limit_per_minute=3,
        cors_origins=["http://allowed.example"],
    )
    with TestClient(create_app(svc), base_url=LOCAL) as c:
        yield c
    svc.close()


def test_api_keys_when_configured(guarded: TestClient) -> None:
    missing = guarded.get("/api/v1/corpora")
    assert_error(missing, 401, "unauthorized")
    assert missing.headers["www-authenticate"] == "Bearer"
    assert_error(
        guarded.get("/api/v1/corpora", headers={"Authorization": "Bearer nope"}),
        401,
        "unauthorized",
    )
    assert (
        guarded.get("/api/v1/corpora", headers={"Authorization": "Bearer k-one"}).status_code == 200
    )
    assert guarded.get("/health").status_code == 200  # probes need no key


def test_rate_limit_is_per_key(guarded: TestClient) -> None:
    one = {"Authorization": "Bearer k-one"}
    for _ in range(3):
        assert guarded.get("/api/v1/corpora", headers=one).status_code == 200
    limited = guarded.get("/api/v1/corpora", headers=one)
    assert_error(limited, 429, "rate_limited")
    assert int(limited.headers["retry-after"]) >= 1
    assert (
        guarded.get("/api/v1/corpora", headers={"Authorization": "Bearer k-two"}).status_code == 200
    )


def test_origins_not_on_the_allowlist_are_refused(guarded: TestClient) -> None:
    key = {"Authorization": "Bearer k-two"}
    ok = guarded.get("/api/v1/corpora", headers={**key, "Origin": "http://allowed.example"})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "http://allowed.example"
    preflight = guarded.options(
        "/api/v1/ask",
        headers={
            "Origin": "http://allowed.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert preflight.status_code == 200
    evil = guarded.get("/api/v1/corpora", headers={**key, "Origin": "http://evil.example"})
    assert_error(evil, 403, "origin_not_allowed")
    refused_preflight = guarded.options(
        "/api/v1/ask",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert_error(refused_preflight, 403, "origin_not_allowed")


# --- signed media links; the UI behind a login -------------------------------------------


@pytest.fixture(scope="module")
def keyed(
    tmp_path_factory: pytest.TempPathFactory,
    encoder: SentenceTransformerEncoder,
    llm: LlamaCppGenerator,
    analyzer: CnnImageAnalyzer,
    corpus: Path,
) -> Iterator[TestClient]:
    """An app with API keys, a rate limit of 2 a minute, and the UI mounted."""
    root = tmp_path_factory.mktemp("keyed")
    svc = make_service(root, encoder, llm, analyzer, api_keys=["k-one"], rate_limit_per_minute=2)
    assert svc.ingest([corpus]).ok
    with TestClient(with_ui(create_app(svc), svc), base_url=LOCAL) as c:
        yield c
    svc.close()


def test_answers_link_media_a_browser_can_load_without_the_key(keyed: TestClient) -> None:
    body = keyed.post(
        "/api/v1/ask",
        json={"question": "When was the Zorblax reactor commissioned?", "corpora": ["paragraph"]},
        headers={"Authorization": "Bearer k-one"},
    ).json()
    pdf = next(s for s in body["sources"] if s["source"].endswith("plant.pdf"))
    page, file = pdf["media"]["page_image"], pdf["media"]["file"]
    assert "&sig=" in page and "&sig=" in file and "k-one" not in page + file
    # No Authorization header, and more requests than the rate limit (2) allows: media
    # follow an answer and are not counted.
    for _ in range(3):
        assert keyed.get(page).content.startswith(b"\x89PNG")
    part = keyed.get(file, headers={"Range": "bytes=0-9"})
    assert part.status_code == 206 and len(part.content) == 10 and part.content.startswith(b"%PDF")
    # A signature covers its own file and page only, and its expiry.
    assert_error(keyed.get(page.replace("page=2", "page=1")), 401, "unauthorized")
    assert_error(keyed.get(page.replace("plant.pdf", "plant.PDF")), 401, "unauthorized")
    assert_error(keyed.get(page[:-4] + "0000"), 401, "unauthorized")
    exp = int(page.split("&exp=")[1].split("&")[0])
    assert_error(keyed.get(page.replace(f"exp={exp}", f"exp={exp + 3600}")), 401, "unauthorized")
    # Unsigned, the key still works.
    plain = f"/api/v1/page?path={quote(pdf['source'], safe='')}&page=2"
    assert_error(keyed.get(plain), 401, "unauthorized")
    ok = keyed.get(plain, headers={"Authorization": "Bearer k-one"})
    assert ok.status_code == 200


def test_signed_links_expire_and_die_with_their_secret() -> None:
    now = [1_000_000.0]
    links = MediaLinks(b"s" * 32, ttl_s=600, clock=lambda: now[0])
    url = links.page("/data/a.pdf", 3)
    exp, sig = int(url.split("exp=")[1].split("&")[0]), url.split("sig=")[1]
    assert now[0] + 600 <= exp <= now[0] + 1200  # between one and two periods ahead
    assert links.valid("page", "/data/a.pdf", "3", exp, sig)
    assert links.page("/data/a.pdf", 3) == url  # stable within a period: browser caches work
    assert not MediaLinks(b"t" * 32).valid("page", "/data/a.pdf", "3", exp, sig)
    assert not MediaLinks().valid("page", "/data/a.pdf", "3", exp, sig)  # keys removed
    now[0] = exp + 1
    assert not links.valid("page", "/data/a.pdf", "3", exp, sig)
    assert "sig=" not in (MediaLinks().media("/data/a.jpg") or "")


def test_the_ui_needs_a_login_when_the_api_has_keys(keyed: TestClient) -> None:
    keyed.cookies.clear()
    assert keyed.get("/ui/config").status_code == 401
    wrong = keyed.post("/ui/login", data={"username": "admin", "password": "nope"})
    assert wrong.status_code >= 400
    assert keyed.get("/ui/config").status_code == 401
    right = keyed.post("/ui/login", data={"username": "admin", "password": "k-one"})
    assert right.status_code == 200, right.text
    assert keyed.get("/ui/config").status_code == 200
    keyed.cookies.clear()


def test_llm_server_down_is_a_502_and_a_stream_error_event(
    tmp_path: Path, encoder: SentenceTransformerEncoder, analyzer: CnnImageAnalyzer, corpus: Path
) -> None:
    down = OpenAIGenerator(f"http://127.0.0.1:{free_port()}/v1", "m", timeout=5, connect_timeout=2)
    svc = make_service(tmp_path, encoder, down, analyzer)
    assert svc.ingest([corpus / "plant.pdf"]).ok
    with TestClient(create_app(svc), base_url=LOCAL) as c:
        question = {"question": "When was the Zorblax reactor commissioned?"}
        error = assert_error(c.post("/api/v1/ask", json=question), 502, "llm_unavailable")
        assert "connection refused" in error["message"]
        with c.stream("POST", "/api/v1/ask", json={**question, "stream": True}) as r:
            stream = events("".join(r.iter_text()))
        assert stream[0][0] == "route" and stream[-1][0] == "error"
        assert stream[-1][1]["code"] == "llm_unavailable"
    svc.close()
