"""The ``mmrag`` command as a user runs it: a real subprocess, real models, a data folder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import free_port, write_pdf


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from app.cli import main; main()", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


@contextmanager
def serving(env: dict[str, str], cwd: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`mmrag serve` in a subprocess on a free port, up and answering; stopped after."""
    import time
    import urllib.request

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from app.cli import main; main()", "serve", "--port", str(port)],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                    assert json.loads(r.read()) == {"status": "ok"}
                    break
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "mmrag serve did not come up"
                time.sleep(0.3)  # waiting for the server to listen, not timing it
        yield base, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture()
def env(tmp_path: Path, gguf_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "MMRAG_DATA_DIR": str(tmp_path / "data"),
        "MMRAG_LLM_MODEL_PATH": str(gguf_path),
        "MMRAG_MAX_TOKENS": "64",
        "MMRAG_TEMPERATURE": "0",
        "COLUMNS": "200",
    }


def test_ingest_collections_ask(tmp_path: Path, env: dict[str, str]) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    write_pdf(
        docs / "plant.pdf",
        [["Intro page."], ["The Zorblax reactor was commissioned in 1987 in Tromsø."]],
    )
    (docs / "broken.pdf").write_bytes(b"not a pdf at all")

    ingest = run(["ingest", str(docs)], env, tmp_path)
    assert ingest.returncode == 1, ingest.stderr  # one file failed, the other went in
    assert "broken.pdf" in ingest.stdout + ingest.stderr
    assert "not a readable PDF" in ingest.stdout + ingest.stderr
    assert "Ingest summary" in ingest.stdout

    again = run(["ingest", str(docs / "plant.pdf")], env, tmp_path)
    assert again.returncode == 0, again.stderr
    assert "unchanged" in again.stdout

    collections = run(["collections"], env, tmp_path)
    assert collections.returncode == 0, collections.stderr
    assert "paragraph" in collections.stdout and "document" in collections.stdout

    ask = run(["ask", "--json", "When was the Zorblax reactor commissioned?"], env, tmp_path)
    assert ask.returncode == 0, ask.stderr
    result = json.loads(ask.stdout)
    assert "1987" in result["answer"]
    # The trained router picks passages for a one-fact question, and shows its scores.
    assert result["route"]["corpora"] == ["paragraph"]
    assert result["route"]["scores"]["paragraph"] > 0.5
    assert "paragraph" in result["route"]["reason"]
    top = result["sources"][0]
    assert (Path(top["source"]).name, top["page"]) == ("plant.pdf", 2)

    listed = run(["sources"], env, tmp_path)
    assert listed.returncode == 0 and "plant.pdf" in listed.stdout and "yes" in listed.stdout

    # A file deleted from the folder is shown as gone, and leaves the index with --prune.
    (docs / "plant.pdf").unlink()
    (docs / "broken.pdf").unlink()
    assert "gone" in run(["sources"], env, tmp_path).stdout
    pruned = run(["ingest", "--prune", str(docs)], env, tmp_path)
    assert pruned.returncode == 0, pruned.stderr
    assert "removed" in pruned.stdout and "gone from disk" in pruned.stdout
    counts = run(["collections"], env, tmp_path)
    assert re.search(r"paragraph\W+0\b", counts.stdout), counts.stdout  # its passages went
    again = run(["delete", str(docs / "plant.pdf")], env, tmp_path)
    assert again.returncode == 1 and "not in the index" in again.stdout


def test_errors_are_one_sentence_with_exit_code_2(tmp_path: Path, env: dict[str, str]) -> None:
    env = {**env, "MMRAG_QDRANT_URL": "http://127.0.0.1:9", "MMRAG_QDRANT_PATH": "/tmp/x"}
    result = run(["collections"], env, tmp_path)
    assert result.returncode == 2
    assert "error:" in result.stderr and "MMRAG_QDRANT_URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_puts_api_ui_and_widget_on_one_port(tmp_path: Path, env: dict[str, str]) -> None:
    import urllib.request

    with serving(env, tmp_path) as (base, _):
        for path, marker in (
            ("/api/v1/corpora", b'"corpora"'),
            ("/widget.js", b"attachShadow"),
            ("/demo", b"/widget.js"),
            ("/ui/", b"<html"),
        ):
            with urllib.request.urlopen(f"{base}{path}", timeout=30) as r:
                assert r.status == 200 and marker in r.read(), path


def test_a_second_process_leaves_a_running_server_alone(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """While `mmrag serve` holds the data folder, a second process never touches it:
    writing commands stop with a message naming the server (exit 2, no traceback),
    read-only ones ask the server, and the server's own writes keep working."""
    import time

    import httpx

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "bell.md").write_text(
        "# Bell\n\nThe Ostra bell weighs 930 kilograms.\n", encoding="utf-8"
    )
    assert run(["ingest", str(docs)], env, tmp_path).returncode == 0
    with serving(env, tmp_path) as (base, proc):
        for n in range(3):
            refused = run(["ingest", str(docs)], env, tmp_path)
            assert refused.returncode == 2, refused.stderr
            assert "mmrag serve" in refused.stderr and f"pid {proc.pid}" in refused.stderr
            assert "Traceback" not in refused.stderr
            counted = run(["collections"], env, tmp_path)
            assert counted.returncode == 0, counted.stderr
            # The bell, and one note per round before this one (added through the server).
            assert re.search(rf"paragraph\s+│\s+{n + 1}\b", counted.stdout), counted.stdout
            listed = run(["sources"], env, tmp_path)
            assert listed.returncode == 0 and "bell.md" in listed.stdout, listed.stderr
            # The server's own writes still work after each refused process.
            note = f"# Note {n}\n\nThe Ostra tower has {n + 3} floors.\n".encode()
            files = [("files", (f"n{n}.md", note))]
            job = httpx.post(f"{base}/api/v1/ingest", files=files, timeout=120).json()
            while (state := httpx.get(f"{base}/api/v1/jobs/{job['id']}").json())["status"] in (
                "queued",
                "running",
            ):
                time.sleep(0.2)  # polling the job as a client would
            assert state["status"] == "done" and state["files"][0]["status"] == "added", state
        asked = run(["ask", "--json", "How much does the Ostra bell weigh?"], env, tmp_path)
        assert asked.returncode == 0, asked.stderr
        assert "930" in json.loads(asked.stdout)["answer"]
    # Once the server is gone, the folder is free again.
    assert run(["collections"], env, tmp_path).returncode == 0
