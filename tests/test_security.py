"""Issue 10's regressions, each against the real app served by uvicorn on 127.0.0.1 (the
real embedded store, MiniLM, the packaged CNN and the 0.5B LLM): workspaces and roles,
keys, the Host and body-size guards, what media may be served and how, bad input that
must stay 4xx, a 500 that keeps the connection, uploads that are not duplicated or kept
when they fail, page renders that are bounded, a client that disconnects mid-answer, an
ingest that never blocks answers, and the web UI's file inputs.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.api import create_app
from app.security import MediaLinks
from app.service import Service
from app.ui import mount_ui as with_ui
from generation.llamacpp import LlamaCppGenerator
from ingest.images.describe import CnnImageAnalyzer
from retrieval.encoders import SentenceTransformerEncoder
from tests.helpers import QUAY, make_service, scanned_pdf, serve_in_thread

ROOT_KEY = "root-key-0123456789abcdef"
ACME_EDITOR = "acme-editor-0123456789abcdef"
ACME_WIDGET = "acme-widget-0123456789abcdef"
GLOBEX_EDITOR = "globex-editor-0123456789abcdef"
GLOBEX_ADMIN = "globex-admin-0123456789abcdef"
KEYS = [
    {"name": "globex-admin", "key": GLOBEX_ADMIN, "role": "admin", "workspaces": ["globex"]},
    {"name": "root", "key": ROOT_KEY, "role": "admin", "workspaces": ["*"]},
    {"name": "acme-editor", "key": ACME_EDITOR, "role": "ingest", "workspaces": ["acme"]},
    {"name": "acme-widget", "key": ACME_WIDGET, "role": "read", "workspaces": ["acme"]},
    # Configured by its hash only: the server never holds this key.
    {
        "name": "globex-editor",
        "key_sha256": hashlib.sha256(GLOBEX_EDITOR.encode()).hexdigest(),
        "role": "ingest",
        "workspaces": ["globex"],
    },
]
ACME_NOTE = b"# Anvils\n\nAcme's Zentrix anvil weighs 412 kilograms and ships from Tucson.\n"
GLOBEX_NOTE = b"# Cypress Creek\n\nGlobex's Quillon reactor runs on 77 percent thorium.\n"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class Served:
    url: str
    service: Service
    http: httpx.Client

    def wait(self, job: dict[str, Any], key: str, deadline_s: float = 180) -> dict[str, Any]:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            r = self.http.get(f"/api/v1/jobs/{job['id']}", headers=bearer(key))
            assert r.status_code == 200, r.text
            if r.json()["status"] in ("done", "failed"):
                return dict(r.json())
            time.sleep(0.2)  # polling a job as a client would; not a timing assertion
        raise AssertionError("the ingest job did not finish")

    def upload(self, key: str, *files: tuple[str, bytes], workspace: str | None = None) -> Any:
        return self.http.post(
            "/api/v1/ingest",
            files=[("files", (name, body)) for name, body in files],
            data={"workspace": workspace} if workspace else None,
            headers=bearer(key),
        )


def error_code(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["message"]
    return str(body["error"]["code"])


@pytest.fixture(scope="module")
def analyzer() -> CnnImageAnalyzer:
    return CnnImageAnalyzer()


@pytest.fixture(scope="module")
def keyed(
    tmp_path_factory: pytest.TempPathFactory,
    encoder: SentenceTransformerEncoder,
    llm: LlamaCppGenerator,
    analyzer: CnnImageAnalyzer,
) -> Iterator[Served]:
    """One server with four keys in two workspaces, each with a note ingested."""
    service = make_service(
        tmp_path_factory.mktemp("security"),
        encoder,
        llm,
        analyzer,
        api_keys=KEYS,
        rate_limit_per_minute=0,
        max_upload_mb=2,
        page_renders_per_minute=3,
        max_page_pixels=1_000_000,
    )
    with (
        serve_in_thread(with_ui(create_app(service), service)) as url,
        httpx.Client(base_url=url, timeout=120) as http,
    ):
        served = Served(url, service, http)
        for key, name, body in (
            (ACME_EDITOR, "anvils.md", ACME_NOTE),
            (GLOBEX_EDITOR, "reactor.md", GLOBEX_NOTE),
        ):
            r = served.upload(key, (name, body))
            assert r.status_code == 202, r.text
            assert served.wait(r.json(), key)["files"][0]["status"] == "added"
        yield served
    service.close()


def source_of(served: Served, key: str, question: str, name: str) -> dict[str, Any] | None:
    body = served.http.post("/api/v1/ask", json={"question": question}, headers=bearer(key)).json()
    return next((s for s in body["sources"] if s["source"].endswith(name)), None)


# --- 8: roles and workspaces ------------------------------------------------------------------


def test_a_key_never_sees_another_workspace(keyed: Served) -> None:
    anvil = "How much does the Zentrix anvil weigh?"
    mine = source_of(keyed, ACME_WIDGET, anvil, "anvils.md")
    assert mine is not None and mine["text"].startswith("Acme's Zentrix anvil")
    assert source_of(keyed, GLOBEX_EDITOR, anvil, "anvils.md") is None
    assert (
        source_of(keyed, ACME_EDITOR, "What fuel does the Quillon reactor use?", "reactor.md")
        is None
    )
    # The media of acme's note: acme's keys load it, globex's key is told it does not exist.
    path = mine["source"]
    assert (
        keyed.http.get(
            "/api/v1/media", params={"path": path}, headers=bearer(ACME_WIDGET)
        ).status_code
        == 200
    )
    other = keyed.http.get("/api/v1/media", params={"path": path}, headers=bearer(GLOBEX_EDITOR))
    assert error_code(other, 404) == "not_found"
    # Listings and counts are per workspace; the admin sees both.
    listed = keyed.http.get("/api/v1/sources", headers=bearer(GLOBEX_EDITOR)).json()
    assert [Path(x["source"]).name for x in listed["sources"]] == ["reactor.md"]
    everything = keyed.http.get("/api/v1/sources", headers=bearer(ROOT_KEY)).json()
    assert {Path(x["source"]).name for x in everything["sources"]} >= {"anvils.md", "reactor.md"}
    acme_counts = keyed.http.get("/api/v1/corpora", headers=bearer(ACME_WIDGET)).json()["corpora"]
    all_counts = keyed.http.get("/api/v1/corpora", headers=bearer(ROOT_KEY)).json()["corpora"]
    assert 0 < acme_counts["document"] < all_counts["document"]
    # The OpenAI-compatible endpoint searches the key's workspaces too.
    chat = keyed.http.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": anvil}]},
        headers=bearer(GLOBEX_EDITOR),
    ).json()
    assert not any(x["source"].endswith("anvils.md") for x in chat["sources"])
    assert "412" not in chat["choices"][0]["message"]["content"]
    # An admin of another workspace cannot delete it: for that key it does not exist.
    gone = keyed.http.delete(
        "/api/v1/sources", params={"source": path}, headers=bearer(GLOBEX_ADMIN)
    )
    assert error_code(gone, 404) == "not_found"
    assert source_of(keyed, ACME_WIDGET, anvil, "anvils.md") is not None
    # Naming a workspace the key does not see is refused, not silently empty.
    hidden = keyed.http.post(
        "/api/v1/ask",
        json={"question": anvil, "workspaces": ["acme"]},
        headers=bearer(GLOBEX_EDITOR),
    )
    assert error_code(hidden, 403) == "forbidden"


def test_roles_limit_what_a_key_may_do(keyed: Served) -> None:
    widget = bearer(ACME_WIDGET)
    upload = keyed.upload(ACME_WIDGET, ("x.md", b"# X\n\nText.\n"))
    assert error_code(upload, 403) == "forbidden"
    assert error_code(keyed.http.get("/api/v1/sources", headers=widget), 403) == "forbidden"
    listed = keyed.http.get("/api/v1/sources", headers=bearer(ACME_EDITOR)).json()["sources"]
    anvils = next(x["source"] for x in listed if x["source"].endswith("anvils.md"))
    for key in (ACME_WIDGET, ACME_EDITOR):  # deleting is for admins
        gone = keyed.http.delete("/api/v1/sources", params={"source": anvils}, headers=bearer(key))
        assert error_code(gone, 403) == "forbidden"
    # An ingest key cannot ingest into a workspace it does not see, nor read its jobs.
    elsewhere = keyed.upload(GLOBEX_EDITOR, ("x.md", b"# X\n\nText.\n"), workspace="acme")
    assert error_code(elsewhere, 403) == "forbidden"
    job = keyed.upload(ACME_EDITOR, ("lathe.md", b"# Lathe\n\nThe lathe turns.\n")).json()
    assert keyed.wait(job, ACME_EDITOR)["status"] == "done"
    peek = keyed.http.get(f"/api/v1/jobs/{job['id']}", headers=bearer(GLOBEX_EDITOR))
    assert error_code(peek, 404) == "not_found"


def test_the_ui_login_is_the_keys_name_and_its_workspaces(keyed: Served) -> None:
    login = keyed.http.post("/ui/login", data={"username": "someone", "password": GLOBEX_EDITOR})
    assert login.status_code >= 400  # the right key under another name
    with httpx.Client(base_url=keyed.url, timeout=120) as browser:
        ok = browser.post(
            "/ui/login", data={"username": "globex-editor", "password": GLOBEX_EDITOR}
        )
        assert ok.status_code == 200, ok.text
        counts = gradio_call(browser, "corpora", [])
        assert counts[0]["data"] and counts[1]["data"] == [
            [str(keyed_source(keyed, "reactor.md")), "document", "yes"]
        ]


def keyed_source(keyed: Served, name: str) -> str:
    listed = keyed.http.get("/api/v1/sources", headers=bearer(ROOT_KEY)).json()["sources"]
    return next(x["source"] for x in listed if x["source"].endswith(name))


# --- 1: the web UI takes only files that were uploaded ---------------------------------------


def gradio_call(client: httpx.Client, api_name: str, data: list[Any]) -> Any:
    """Call one of the UI's events through Gradio's HTTP API; the outputs or an error."""
    r = client.post(f"/ui/gradio_api/call/{api_name}", json={"data": data})
    assert r.status_code == 200, r.text
    event_id = r.json()["event_id"]
    with client.stream("GET", f"/ui/gradio_api/call/{api_name}/{event_id}") as stream:
        event = ""
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event in ("complete", "error"):
                payload = json.loads(line[6:])
                if event == "error":
                    raise GradioError(str(payload))
                return payload
    raise AssertionError("no result from the UI")


class GradioError(Exception):
    pass


def file_data(path: Path | str) -> dict[str, Any]:
    return {"path": str(path), "meta": {"_type": "gradio.FileData"}, "orig_name": Path(path).name}


def test_the_ui_cannot_be_made_to_read_server_files(
    tmp_path: Path,
    encoder: SentenceTransformerEncoder,
    llm: LlamaCppGenerator,
    analyzer: CnnImageAnalyzer,
) -> None:
    service = make_service(tmp_path, encoder, llm, analyzer, rate_limit_per_minute=0)
    secret = tmp_path / "server-secret.md"
    secret.write_text("# Secret\n\nThe vault code is 8841-KESTREL.\n", encoding="utf-8")
    import tempfile

    in_tmp = Path(tempfile.gettempdir()) / f"mmrag-test-{time.time_ns()}.md"
    in_tmp.write_text("# Temp\n\nThe launch code is 5512-OSPREY.\n", encoding="utf-8")
    try:
        with (
            serve_in_thread(with_ui(create_app(service), service)) as url,
            httpx.Client(base_url=url, timeout=120) as ui,
        ):
            for target in ("/etc/passwd", secret, in_tmp):
                with pytest.raises(GradioError):
                    gradio_call(ui, "ingest", [[file_data(target)]])
            # The photo input of a question, too.
            with pytest.raises(GradioError):
                gradio_call(ui, "ask", ["What is this?", file_data(secret), [], []])
            assert service.sources() == []
            assert service.collections()["paragraph"] == 0
            # A real upload through the UI still works.
            note = tmp_path / "upload.md"
            note.write_text("# Kiln\n\nThe Brenna kiln fires at 1280 degrees.\n", encoding="utf-8")
            with note.open("rb") as f:
                up = ui.post("/ui/gradio_api/upload", files={"files": ("kiln.md", f)})
            assert up.status_code == 200, up.text
            report = gradio_call(ui, "ingest", [[file_data(up.json()[0])]])
            assert "kiln.md: **added**" in report[0]
            (source,) = service.sources()
            assert "/uploads/default/" in source.source  # kept by us, not in Gradio's cache
    finally:
        in_tmp.unlink(missing_ok=True)
        service.close()


# --- 4: uploads never run as pages of our origin -----------------------------------------------


def test_uploaded_html_is_served_as_an_attachment_under_a_sandbox(keyed: Served) -> None:
    page = (
        b"<html><body><h1>Hello</h1><p>Payload page.</p>"
        b"<script>fetch('/api/v1/sources')</script></body></html>"
    )
    note = b"# Notes\n\nPlain notes about hinges.\n"
    job = keyed.upload(ACME_EDITOR, ("evil.html", page), ("notes.md", note)).json()
    assert keyed.wait(job, ACME_EDITOR)["status"] == "done"
    listed = keyed.http.get("/api/v1/sources", headers=bearer(ACME_EDITOR)).json()["sources"]
    html = next(x["source"] for x in listed if x["source"].endswith("evil.html"))
    md = next(x["source"] for x in listed if x["source"].endswith("notes.md"))
    r = keyed.http.get("/api/v1/media", params={"path": html}, headers=bearer(ACME_EDITOR))
    assert r.status_code == 200 and r.content == page
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"].startswith("attachment")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in r.headers["content-security-policy"]
    shown = keyed.http.get("/api/v1/media", params={"path": md}, headers=bearer(ACME_EDITOR))
    assert shown.headers["content-type"] == "text/plain; charset=utf-8"
    assert "sandbox" in shown.headers["content-security-policy"]


def test_pages_carry_a_csp_and_frame_ancestors(keyed: Served) -> None:
    for path, frames in (("/ui/", "frame-ancestors 'self'"), ("/demo", "frame-ancestors 'none'")):
        r = keyed.http.get(path)
        assert r.status_code in (200, 401), (path, r.status_code)
        csp = r.headers["content-security-policy"]
        assert frames in csp and "img-src 'self' data: blob:" in csp
    api = keyed.http.get("/api/v1/corpora", headers=bearer(ROOT_KEY))
    assert api.headers["x-content-type-options"] == "nosniff"


# --- 12, 13: hosts, keys, failures, the signing secret ---------------------------------------


def test_a_foreign_host_is_refused(keyed: Served) -> None:
    rebound = keyed.http.get(
        "/api/v1/corpora", headers={"Host": "evil.example", **bearer(ROOT_KEY)}
    )
    assert error_code(rebound, 400) == "host_not_allowed"
    port = keyed.url.rsplit(":", 1)[1]
    local = keyed.http.get(
        "/api/v1/corpora", headers={"Host": f"localhost:{port}", **bearer(ROOT_KEY)}
    )
    assert local.status_code == 200
    # Same-origin by Origin == Host no longer helps a rebinding page: its Host is refused.
    sneaky = keyed.http.delete(
        "/api/v1/sources",
        params={"source": "x"},
        headers={"Host": "evil.example", "Origin": "http://evil.example", **bearer(ROOT_KEY)},
    )
    assert error_code(sneaky, 400) == "host_not_allowed"


def test_hashed_keys_work_and_failures_are_throttled(
    tmp_path: Path,
    encoder: SentenceTransformerEncoder,
    llm: LlamaCppGenerator,
    analyzer: CnnImageAnalyzer,
) -> None:
    service = make_service(
        tmp_path, encoder, llm, analyzer, api_keys=KEYS, auth_failures_per_minute=3
    )
    with (
        serve_in_thread(with_ui(create_app(service), service)) as url,
        httpx.Client(base_url=url) as http,
    ):
        assert http.get("/api/v1/corpora", headers=bearer(GLOBEX_EDITOR)).status_code == 200
        for _ in range(3):
            assert (
                error_code(http.get("/api/v1/corpora", headers=bearer("guess")), 401)
                == "unauthorized"
            )
        limited = http.get("/api/v1/corpora", headers=bearer("guess-again"))
        assert (
            error_code(limited, 429) == "rate_limited" and int(limited.headers["retry-after"]) >= 1
        )
        # The UI's login form counts the same way.
        for _ in range(3):
            http.post("/ui/login", data={"username": "root", "password": "nope"})
        assert (
            error_code(http.post("/ui/login", data={"username": "root", "password": "nope"}), 429)
            == "rate_limited"
        )
    # Links are signed with a random secret of the data folder, not with the keys.
    secret = service.settings.data_dir / "secret.key"
    assert secret.stat().st_mode & 0o777 == 0o600 and len(secret.read_bytes()) == 32
    old_scheme = hashlib.sha256("\n".join(["mmrag-media-v1", ROOT_KEY]).encode()).digest()
    forged = MediaLinks(old_scheme).page("/x.pdf", 1)
    exp, sig = int(forged.split("exp=")[1].split("&")[0]), forged.split("sig=")[1]
    assert not MediaLinks(secret.read_bytes()).valid("page", "/x.pdf", "1", exp, sig)
    service.close()


# --- 14: bad input is 4xx; a 500 keeps the connection -----------------------------------------


def test_bad_chat_and_page_requests_are_4xx(keyed: Served) -> None:
    root = bearer(ROOT_KEY)

    def chat(content: Any) -> httpx.Response:
        return keyed.http.post(
            "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": content}]},
            headers=root,
        )

    for content in (
        [{"type": "image_url", "image_url": "data:image/png;base64,AAAA"}],
        [{"type": "image_url", "image_url": {"url": 5}}],
        [{"type": "text", "text": None}],
        [{"type": "audio", "x": 1}],
        "q" * 100_000,
        [{"type": "image_url", "image_url": {"url": "http://example.com/a.png"}}],
    ):
        assert chat(content).status_code == 422, content if isinstance(content, list) else "long"
    long = keyed.http.post("/api/v1/ask", json={"question": "q" * 100_000}, headers=root)
    assert error_code(long, 422) == "invalid_request"
    html = keyed_source(keyed, "anvils.md")
    not_pdf = keyed.http.get("/api/v1/page", params={"path": html, "page": 1}, headers=root)
    assert error_code(not_pdf, 415) == "unsupported_type"


def test_an_unexpected_error_is_a_json_500_and_the_connection_lives(
    tmp_path: Path,
    encoder: SentenceTransformerEncoder,
    llm: LlamaCppGenerator,
    analyzer: CnnImageAnalyzer,
) -> None:
    service = make_service(tmp_path, encoder, llm, analyzer)
    app = create_app(service)

    def broken() -> None:  # stands for a bug in a route
        raise RuntimeError("a bug with a /secret/server/path in its message")

    app.add_api_route("/broken", broken)
    with serve_in_thread(app) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as s:
            request = f"GET /broken HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n"
            follow = f"GET /health HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n"
            s.sendall((request + follow).encode())  # two requests on one connection
            received = b""
            while received.count(b"HTTP/1.1 ") < 2 or not received.endswith(b'{"status":"ok"}'):
                chunk = s.recv(65536)
                assert chunk, f"the server closed the connection after: {received!r}"
                received += chunk
    first, second = received.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"500") and b'"code":"internal"' in first
    assert b"/secret/server/path" not in first
    assert second.startswith(b"200")
    service.close()


# --- 11, 15: one body limit everywhere; uploads not duplicated, failed ones deleted --------------


def test_bodies_over_the_limit_are_refused_before_they_are_read(keyed: Served) -> None:
    root = bearer(ROOT_KEY)
    big = "data:image/png;base64," + "A" * (3 * 1024 * 1024)
    body = {
        "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": big}}]}
        ]
    }
    declared = keyed.http.post("/v1/chat/completions", json=body, headers=root)
    assert error_code(declared, 413) == "too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        payload = json.dumps(body).encode()
        for i in range(0, len(payload), 65536):
            yield payload[i : i + 65536]

    streamed = keyed.http.post(
        "/v1/chat/completions",
        content=chunks(),
        headers={**root, "Content-Type": "application/json"},
    )
    assert error_code(streamed, 413) == "too_large"
    upload = keyed.upload(ACME_EDITOR, ("big.txt", b"a" * (3 * 1024 * 1024)))
    assert error_code(upload, 413) == "too_large"
    staging = keyed.service.settings.data_dir / "uploads" / ".staging"
    assert not staging.exists() or not any(staging.iterdir())


def test_reuploads_are_recognised_and_failures_are_not_kept(keyed: Served) -> None:
    def counts() -> dict[str, int]:
        r = keyed.http.get("/api/v1/corpora", headers=bearer(ACME_EDITOR))
        return dict(r.json()["corpora"])

    before = counts()
    again = keyed.upload(ACME_EDITOR, ("anvils.md", ACME_NOTE)).json()
    assert [f["status"] for f in keyed.wait(again, ACME_EDITOR)["files"]] == ["unchanged"]
    assert counts() == before
    # Two different files with one name in one request: both kept.
    twins = keyed.upload(
        ACME_EDITOR,
        ("twin.md", b"# One\n\nThe first twin file.\n"),
        ("twin.md", b"# Two\n\nThe second twin file.\n"),
    ).json()
    assert [f["status"] for f in keyed.wait(twins, ACME_EDITOR)["files"]] == ["added", "added"]
    # A file that cannot be read: a message without server paths, and the file is gone.
    broken = keyed.upload(ACME_EDITOR, ("broken.pdf", b"%PDF-1.7 not really a pdf")).json()
    done = keyed.wait(broken, ACME_EDITOR)
    (failed,) = done["files"]
    assert failed["status"] == "failed" and "broken.pdf" in failed["detail"]
    data = str(keyed.service.settings.data_dir)
    assert data not in failed["detail"] and "/uploads/" not in failed["detail"]
    assert not list((keyed.service.settings.data_dir / "uploads").rglob("broken.pdf"))


def test_a_question_photo_is_deleted_after_the_answer(keyed: Served) -> None:
    from PIL import Image

    buffer = __import__("io").BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buffer, "PNG")
    r = keyed.http.post(
        "/api/v1/ask/image",
        data={"question": "What is in this picture?"},
        files={"image": ("photo.png", buffer.getvalue(), "image/png")},
        headers=bearer(ROOT_KEY),
    )
    assert r.status_code == 200, r.text
    uploads = keyed.service.settings.data_dir / "uploads"
    assert not [p for p in uploads.rglob("*") if p.is_file() and ".staging" in p.parts]


# --- 10: page renders are bounded, cached and limited ----------------------------------------


def test_page_renders_are_bounded_cached_and_rate_limited(keyed: Served, tmp_path: Path) -> None:
    from PIL import Image
    from reportlab.pdfgen import canvas

    pdf = tmp_path / "poster.pdf"
    c = canvas.Canvas(str(pdf), pagesize=(14400, 14400))
    for n in range(4):
        c.drawString(72, 72, f"Poster page {n + 1} about the Zentrix anvil and its 412 kilograms.")
        c.showPage()
    c.save()
    job = keyed.upload(ACME_EDITOR, ("poster.pdf", pdf.read_bytes())).json()
    assert keyed.wait(job, ACME_EDITOR)["status"] == "done"
    source = keyed_source(keyed, "poster.pdf")
    key = bearer(ACME_EDITOR)

    def page(n: int) -> httpx.Response:
        return keyed.http.get("/api/v1/page", params={"path": source, "page": n}, headers=key)

    # Another workspace's key is told the PDF does not exist, page or file.
    for endpoint, params in (("page", {"path": source, "page": 1}), ("media", {"path": source})):
        foreign = keyed.http.get(
            f"/api/v1/{endpoint}", params=params, headers=bearer(GLOBEX_EDITOR)
        )
        assert error_code(foreign, 404) == "not_found"
    first = page(1)
    assert first.status_code == 200
    image = Image.open(__import__("io").BytesIO(first.content))
    assert image.width * image.height <= 1_000_000  # max_page_pixels, whatever the page size
    assert page(2).status_code == 200 and page(3).status_code == 200  # 3 renders a minute
    assert error_code(page(4), 429) == "rate_limited"
    assert page(1).content == first.content  # cached: not a render, not counted


# --- 7: a client that disconnects frees the model at once -----------------------------------


class PacedModel:
    """A Generator that writes like a model that does not stop soon (a token every 10 ms,
    up to 6,000: a minute), holding its lock while it streams as llama.cpp does. The real
    model cannot be made to write for minutes on demand; this one shows whether the server stops a
    generation whose client left, instead of running it to the end. "Say hello" gets a
    short answer, so a second question can finish."""

    name = "paced"
    supports_images = False
    context_window = 4096

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tokens = 0
        self.closed = threading.Event()

    def stream(self, messages: Any, *, max_tokens: int = 512, temperature: float = 0.1) -> Any:
        short = "hello" in messages[-1].content.lower()
        with self.lock:
            try:
                for n in range(3 if short else 6_000):
                    self.tokens += 1
                    yield "Hello [1]. " if short else f"word{n} "
                    threading.Event().wait(0.01)  # the pace of a model, not a test's timing
            finally:
                if not short:
                    self.closed.set()


def test_a_disconnect_mid_stream_stops_the_answer(
    tmp_path: Path,
    encoder: SentenceTransformerEncoder,
    analyzer: CnnImageAnalyzer,
) -> None:
    model = PacedModel()
    service = make_service(tmp_path, encoder, model, analyzer, max_tokens=100_000)
    note = tmp_path / "keeper.md"
    note.write_text("# Keeper\n\nThe lighthouse keeper of Skarv lived alone for 30 years.\n")
    assert service.ingest([note]).ok
    question = {"question": "Tell me about the lighthouse keeper of Skarv.", "stream": True}
    app = create_app(service)
    with (
        serve_in_thread(app) as url,
        httpx.Client(base_url=url, timeout=120) as http,
    ):
        with http.stream("POST", "/api/v1/ask", json=question) as r:
            assert r.status_code == 200
            tokens = 0
            for line in r.iter_lines():
                tokens += line.startswith("event: token")
                if tokens == 5:
                    break  # the client goes away mid-answer
        # Without the cancel the model would write for a minute more.
        assert model.closed.wait(30), "the generation went on after the client left"
        assert model.tokens < 3000
        with model.lock:  # free: a second question gets the model at once
            pass
        again = http.post("/api/v1/ask", json={"question": "Say hello."})
        assert again.status_code == 200, again.text
        # A non-streamed answer whose client leaves is stopped as well.
        model.closed.clear()
        with pytest.raises(httpx.ReadTimeout):
            http.post("/api/v1/ask", json={**question, "stream": False}, timeout=2)
        assert model.closed.wait(30), "a non-streamed answer went on after its client left"
    service.close()


def test_closing_a_real_model_stream_releases_the_model(llm: LlamaCppGenerator) -> None:
    from generation.prompt import build_messages_without_sources

    stream = llm.stream(
        build_messages_without_sources("Tell me about lighthouses."), max_tokens=400
    )
    assert next(stream)
    assert not llm._lock.acquire(blocking=False)  # held while it streams
    stream.close()
    assert llm._lock.acquire(blocking=False)  # released by the close, not by the end
    llm._lock.release()


# --- 10: an ingest never keeps an answer waiting ---------------------------------------------


def test_answers_are_served_while_an_ingest_runs(keyed: Served, tmp_path: Path) -> None:
    scan = scanned_pdf(tmp_path / "long-scan.pdf", [QUAY, QUAY[1:], QUAY, QUAY[1:], QUAY, QUAY[1:]])
    job = keyed.upload(ACME_EDITOR, ("long-scan.pdf", scan.read_bytes())).json()
    while (
        keyed.http.get(f"/api/v1/jobs/{job['id']}", headers=bearer(ACME_EDITOR)).json()["status"]
        == "queued"
    ):
        time.sleep(0.1)  # waiting for the job to start, not timing it
    answered = keyed.http.post(
        "/api/v1/ask",
        json={"question": "How much does the Zentrix anvil weigh?"},
        headers=bearer(ACME_WIDGET),
    )
    assert answered.status_code == 200 and "412" in answered.json()["answer"]
    status = keyed.http.get(f"/api/v1/jobs/{job['id']}", headers=bearer(ACME_EDITOR)).json()
    assert status["status"] == "running", "the answer waited for the whole ingest"
    assert keyed.wait(job, ACME_EDITOR, deadline_s=300)["status"] == "done"
