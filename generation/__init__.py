"""Generation: grounded prompts, LLM backends (llama.cpp, OpenAI-compatible), citations.

The backends are imported lazily by their own modules (``generation.llamacpp``,
``generation.openai_compat``); importing this package loads neither llama.cpp nor
openai.
"""

from __future__ import annotations

from generation.base import Answer, Citation, Generator, Message, Source
from generation.citations import MarkerFilter, resolve_citations
from generation.llamacpp import LlamaCppGenerator, ensure_gguf
from generation.openai_compat import OpenAIGenerator
from generation.prompt import NO_ANSWER_TEXT, build_messages, build_messages_without_sources

__all__ = [
    "NO_ANSWER_TEXT",
    "Answer",
    "Citation",
    "Generator",
    "LlamaCppGenerator",
    "MarkerFilter",
    "Message",
    "OpenAIGenerator",
    "Source",
    "build_messages",
    "build_messages_without_sources",
    "ensure_gguf",
    "resolve_citations",
]
