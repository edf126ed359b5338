"""A generator behind an OpenAI-compatible chat API: vLLM in production, or any server
that speaks ``/v1/chat/completions`` with streaming (llama.cpp's server, Ollama, ...).

Every failure becomes a :class:`GenerationError` whose message names the server and
what went wrong, because the person reading it usually has to go and start or fix that
server. Use::

    llm = OpenAIGenerator("http://127.0.0.1:8000/v1", "Qwen/Qwen2.5-VL-3B-Instruct")
    for delta in llm.stream(messages):
        print(delta, end="")
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from generation.base import Message
from retrieval.errors import GenerationError


class OpenAIGenerator:
    """Streams chat completions from an OpenAI-compatible server.

    ``timeout`` bounds each wait for data (the whole answer may take longer, as long as
    tokens keep coming); ``connect_timeout`` is kept short so that a server that is
    down is reported in seconds. A failed connection is retried once. Nothing is sent
    at construction: the first error shows up on the first :meth:`stream`.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str = "EMPTY",
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        supports_images: bool = False,
        context_window: int = 4096,
        image_max_side: int = 448,
    ) -> None:
        try:
            import openai
        except ImportError as e:
            raise GenerationError(
                "the OpenAI-compatible backend needs the openai package: pip install openai"
            ) from e
        self._openai: Any = openai
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout = timeout
        self.name = f"openai:{model}"
        self.supports_images = supports_images
        self.context_window = context_window
        self.image_max_side = image_max_side
        self._client: Any = openai.OpenAI(
            base_url=self.base_url,
            api_key=api_key,
            timeout=openai.Timeout(timeout, connect=connect_timeout),
            max_retries=1,
        )

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int = 512,
        temperature: float = 0.1,
    ) -> Iterator[str]:
        """Yield the answer's text as it arrives (deltas, never empty)."""
        openai = self._openai
        where = f"the LLM server at {self.base_url}"
        try:
            chunks = self._client.chat.completions.create(
                model=self.model,
                messages=[self._message(m) for m in messages],
                max_tokens=max_tokens,
                temperature=temperature,
                stream=True,
            )
            finished = False
            try:
                for chunk in chunks:
                    if not chunk.choices:
                        continue
                    choice = chunk.choices[0]
                    if choice.delta.content:
                        yield choice.delta.content
                    finished = finished or choice.finish_reason is not None
            finally:
                chunks.close()
            if not finished:
                # llama-cpp-python's server answers a too-long prompt with "200 OK" and an
                # empty stream; a crashed server cuts the stream short. Both end without
                # the finish_reason every complete answer carries.
                raise GenerationError(
                    f"{where} ended the stream before the answer was complete (no "
                    "finish_reason); the prompt may exceed the model's context window, "
                    "or the server failed (see its log)"
                )
        except openai.APITimeoutError as e:
            raise GenerationError(
                f"{where} did not answer within {self.timeout:g} s (model {self.model})"
            ) from e
        except openai.APIConnectionError as e:
            raise GenerationError(
                f"cannot reach {where} ({_connection_reason(e)}); is the server (vLLM) running?"
            ) from e
        except openai.APIStatusError as e:
            hint = ""
            if e.status_code == 404:
                hint = " (is the base URL right? OpenAI-compatible servers usually end in /v1)"
            raise GenerationError(
                f"{where} answered HTTP {e.status_code} for model {self.model}: "
                f"{_error_detail(e.body, e.message)}{hint}"
            ) from e
        except (openai.APIError, ValueError, AttributeError) as e:
            # An error event inside the stream, or chunks that are not JSON / not shaped
            # like chat completion chunks (a server that is not OpenAI-compatible).
            raise GenerationError(f"{where} sent a malformed or failed stream: {e}") from e

    def _message(self, message: Message) -> dict[str, Any]:
        """OpenAI chat format; pictures as labelled ``image_url`` parts (data URLs)."""
        if not (message.images and self.supports_images):
            return {"role": message.role, "content": message.content}
        parts: list[dict[str, Any]] = [{"type": "text", "text": message.content}]
        for image in message.images:
            url = image_data_url(image.path, self.image_max_side)
            if url is None:
                continue  # a thumbnail deleted since ingestion: its text still stands in
            parts.append({"type": "text", "text": image.label})
            parts.append({"type": "image_url", "image_url": {"url": url}})
        return {"role": message.role, "content": parts}


def image_data_url(path: str, max_side: int) -> str | None:
    """A JPEG data URL of the picture, its longer side at most ``max_side`` pixels."""
    import base64
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            picture = opened.convert("RGB")
        picture.thumbnail((max_side, max_side))
        buffer = io.BytesIO()
        picture.save(buffer, "JPEG", quality=85)
    except (OSError, UnidentifiedImageError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _connection_reason(error: BaseException) -> str:
    """The innermost cause in a few words: "connection refused", "name not resolved"..."""
    cause: BaseException = error
    while cause.__cause__ is not None:
        cause = cause.__cause__
    if isinstance(cause, ConnectionRefusedError) or "refused" in str(cause).lower():
        return "connection refused"
    text = str(cause) or type(cause).__name__
    if "name or service not known" in text.lower() or "nodename nor servname" in text.lower():
        return "host name not found"
    return text


def _error_detail(body: object, fallback: str) -> str:
    """The server's own error message from the many JSON shapes servers use."""
    if isinstance(body, dict):
        nested = body.get("error")
        if isinstance(nested, dict) and nested.get("message"):
            return str(nested["message"])
        for key in ("message", "detail", "error"):
            if body.get(key):
                return str(body[key])
    if isinstance(body, str) and body.strip():
        return body.strip()
    return fallback
