"""Writing one grounded answer: prompt, stream, retry an uncited draft, check citations.

The pipeline's ``generate`` and ``check`` nodes and ``mmrag eval grounding`` both go
through :func:`write_answer`, so what is evaluated is what users get.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from generation.base import Answer, Conflict, Generator, Message, Source
from generation.citations import MarkerFilter, resolve_citations
from generation.conflicts import conflict_note, find_conflicts
from generation.injection import find_instructions, payloads
from generation.markup import strip_markup
from generation.prompt import (
    NO_ANSWER_TEXT,
    STRICT_REMINDER,
    build_messages,
    build_messages_without_sources,
)


@dataclass
class Draft:
    """What the model wrote (the text that streamed), and how it went."""

    text: str
    conflicts: list[Conflict] = field(default_factory=list)
    # What instructions hidden in the sources asked for (removed from the answer), and
    # the sources that held them.
    payloads: frozenset[str] = frozenset()
    injected: tuple[int, ...] = ()
    retried: bool = False
    first_token_s: float | None = None  # from the call to the first delta
    deltas: int = 0  # pieces streamed (one per token for llama.cpp and vLLM)
    seconds: float = 0.0
    cancelled: bool = False  # the asker went away; the text is cut short


def write_answer(
    llm: Generator,
    question: str,
    sources: Sequence[Source],
    *,
    max_tokens: int = 384,
    temperature: float = 0.1,
    max_images: int = 4,
    on_token: Callable[[str], None] | None = None,
    on_retry: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    filter_instructions: bool = True,
) -> Draft:
    """Stream an answer over ``sources`` (none: from the model alone).

    Sources that disagree are named in the prompt. Markers that point nowhere are held
    back from ``on_token`` and markers are checked as they stream, so the pieces sent
    add up to the final answer text. A draft over real evidence that cites nothing is
    written once more with a stricter instruction; ``on_retry`` announces it (what was
    streamed before is withdrawn). A generator that ``supports_images`` is shown up to
    ``max_images`` pictures of the image and video sources. When ``should_stop`` turns
    true (the asker went away) generation ends at the next token and the model is freed.

    With ``filter_instructions`` (the default), sentences the sources address to an AI
    assistant are kept out of the prompt, and what they ask for (URLs, e-mail
    addresses, code words) is removed from the answer as it streams
    (:mod:`generation.injection`). Markup that would fetch anything is always removed.
    """
    start = time.perf_counter()
    conflicts = find_conflicts(sources)
    messages = (
        build_messages(
            question,
            sources,
            note=conflict_note(conflicts),
            max_images=max_images if llm.supports_images else 0,
            filter_instructions=filter_instructions,
        )
        if sources
        else build_messages_without_sources(question)
    )
    draft = Draft("", conflicts)
    if filter_instructions:
        texts = [s.hit.item.text for s in sources]
        draft.payloads = payloads(texts, question)
        draft.injected = tuple(
            s.number for s, text in zip(sources, texts, strict=True) if find_instructions(text)
        )

    def stopped() -> bool:
        if should_stop is not None and should_stop():
            draft.cancelled = True
        return draft.cancelled

    def run(chat: list[Message]) -> str:
        parts: list[str] = []
        markers = MarkerFilter(sources, payloads=draft.payloads)
        if stopped():
            return ""
        stream = llm.stream(chat, max_tokens=max_tokens, temperature=temperature)
        try:
            for delta in stream:
                if stopped():
                    break
                if draft.first_token_s is None:
                    draft.first_token_s = time.perf_counter() - start
                draft.deltas += 1
                parts.append(delta)
                if (shown := markers.feed(delta)) and on_token:
                    on_token(shown)
        finally:
            # Closed on every exit: a backend may hold its model until its stream ends.
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        if (rest := markers.flush()) and on_token:
            on_token(rest)
        return "".join(parts)

    draft.text = run(messages)
    if sources and not draft.cancelled and _uncited(draft.text, sources):
        # An answer over real evidence that cites nothing cannot be checked: ask once
        # more, with the draft shown and a stricter instruction.
        if on_retry:
            on_retry("the answer cited no source; asking again")
        draft.retried = True
        again = f"{STRICT_REMINDER}\nQuestion: {question.strip()}"
        draft.text = run([*messages, Message("assistant", draft.text), Message("user", again)])
    draft.seconds = time.perf_counter() - start
    return draft


def check_answer(draft: Draft, sources: Sequence[Source]) -> Answer:
    """The final answer: citations resolved and checked, conflicts and retry recorded."""
    if not sources:
        return Answer(strip_markup(draft.text).strip(), (), (), (), grounded=False)
    return replace(
        resolve_citations(draft.text, sources, payloads=draft.payloads),
        conflicts=tuple(draft.conflicts),
        retried=draft.retried,
        injected=draft.injected,
    )


def _uncited(text: str, sources: Sequence[Source]) -> bool:
    """No valid citation, and not the instructed refusal (which needs none)."""
    if NO_ANSWER_TEXT.rstrip(".") in text:
        return False
    return not resolve_citations(text, sources).citations
