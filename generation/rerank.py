"""Optional re-ranking of candidate sources; the LLM-judge implementation.

A cross-encoder would be the usual reranker, but none ships offline here; the generator
itself can judge relevance. :class:`LlmJudgeReranker` asks it, per candidate, whether
the passage helps answer the question (one short generation each, temperature 0) and
moves the "yes" candidates ahead of the "no" ones, keeping the selection's order within
each group. Candidates judged irrelevant are dropped unless none is judged relevant (a
wrong "no" from a small model then costs nothing). Off by default (``MMRAG_RERANKER``):
it costs one model call per candidate.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

from generation.base import Generator, Message
from retrieval.base import Hit

_PROMPT = (
    "You judge whether a passage helps to answer a question. Reply with one word: yes "
    "if the passage contains information that answers the question, otherwise no."
)
_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)
# Enough of a passage to judge it; the whole of a long one would cost a full prompt.
_MAX_CHARS = 1500


class Reranker(Protocol):
    name: str

    def rerank(self, question: str, hits: Sequence[Hit]) -> list[Hit]: ...


class LlmJudgeReranker:
    """The generator judges each candidate: relevant ones first, irrelevant ones dropped."""

    name = "llm-judge"

    def __init__(self, generator: Generator) -> None:
        self.generator = generator

    def judge(self, question: str, hit: Hit) -> bool | None:
        """True/False for the model's yes/no; None when its reply has neither."""
        text = " ".join(hit.item.text.split())[:_MAX_CHARS]
        messages = [
            Message("system", _PROMPT),
            Message("user", f"Question: {question}\n\nPassage: {text}\n\nYes or no?"),
        ]
        reply = "".join(self.generator.stream(messages, max_tokens=3, temperature=0.0))
        found = _YES_NO.search(reply)
        return None if found is None else found.group(1).lower() == "yes"

    def rerank(self, question: str, hits: Sequence[Hit]) -> list[Hit]:
        verdicts = [self.judge(question, h) for h in hits]
        relevant = [h for h, v in zip(hits, verdicts, strict=True) if v is not False]
        return relevant if relevant else list(hits)
