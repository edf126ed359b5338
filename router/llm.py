"""The training-free router: the configured generator picks the corpus.

Why have it: it needs no labelled data, so it works for a deployment whose questions look
nothing like the training set, and it is the fallback when the trained router is unsure.
Why it is not the default: one generation per question costs a model call (about half a
second with the packaged 0.5B model once the fixed prompt is cached, far more on a busy
server) where the trained router takes milliseconds, and small models follow label
definitions loosely (docs/benchmarks.md has both side by side).

The prompt is a list of label definitions and a few worked examples as chat turns,
then the question; the model answers with one label. The fixed part comes first and is
identical for every question, so llama.cpp reuses its evaluated prefix and only the
question is new work.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from retrieval.base import Corpus
from retrieval.chat import Generator, Message
from retrieval.errors import GenerationError
from router.base import LABELS, Route, decide

_DEFINITIONS = (
    "You decide where the answer to a question should be looked up. Reply with exactly "
    "one word from this list:\n"
    "no: general knowledge, school science, maths or definitions; answer without looking "
    "anything up\n"
    "paragraph: one specific fact that a single passage of a document states\n"
    "document: several facts to combine, from different places or a whole document "
    "(comparisons, 'which of the two', multi-step questions)\n"
    "image: what something looks like: a picture, a photo, a colour, a shape, a sign\n"
    "clip: a moment or scene in a video: what happens when, what someone does or says\n"
    "video: a whole video: its topic, its story, a summary, a tutorial from start to end"
)

# Written for this prompt (not drawn from the evaluation data, so the evaluation of the
# LLM router stays honest): two of the hardest pairs, paragraph/document and clip/video.
EXAMPLES: tuple[tuple[str, str], ...] = (
    ("What is the boiling point of water at sea level in Celsius?", "no"),
    ("In which year did the company open its first store in Japan?", "paragraph"),
    (
        "Which of the two bands formed earlier, the one that recorded Blue Monday or the "
        "one whose singer starred in Quadrophenia?",
        "document",
    ),
    ("What colour is the roof of the lighthouse in the photo?", "image"),
    ("What does the chef add to the pan right after flipping the pancake?", "clip"),
    ("Summarise the tutorial on repairing a bicycle tyre.", "video"),
    ("Who wrote the novel whose author was born in the same city as the painter?", "document"),
    ("Is the dog in the picture wearing a collar?", "image"),
)

_WORD = re.compile(r"[a-z]+")


class LlmRouter:
    """Routes with one short generation; ``scores`` is 1.0 for the label the model named.

    A reply that names no label is a ``GenerationError`` only if ``strict``; otherwise
    the route falls back to ``fallback`` (paragraph: searching text is the safe choice
    when the model's answer cannot be read).
    """

    name = "llm"

    def __init__(
        self,
        generator: Generator,
        *,
        fallback: str = Corpus.PARAGRAPH.value,
        strict: bool = False,
    ) -> None:
        if fallback not in LABELS:
            raise ValueError(f"unknown fallback label {fallback!r}; one of {', '.join(LABELS)}")
        self.generator = generator
        self.fallback = fallback
        self.strict = strict

    def label(self, question: str) -> str | None:
        """The label the model names for ``question`` (None if its reply names none)."""
        reply = "".join(self.generator.stream(messages(question), max_tokens=4, temperature=0.0))
        return parse(reply)

    def route(self, question: str, available: Mapping[Corpus, int]) -> Route:
        named = self.label(question)
        if named is None and self.strict:
            raise GenerationError(f"the router model named no label for {question!r}")
        chosen = named or self.fallback
        scores = {label: (1.0 if label == chosen else 0.0) for label in LABELS}
        why = f"the model said {chosen}" if named else f"no label in the reply: {chosen}"
        return decide(scores, available, threshold=0.5, reason=why)


def messages(question: str) -> list[Message]:
    """Definitions, worked examples as chat turns, then the question."""
    out = [Message("system", _DEFINITIONS)]
    for q, label in EXAMPLES:
        out += [Message("user", q), Message("assistant", label)]
    out.append(Message("user", " ".join(question.split())))
    return out


def parse(reply: str) -> str | None:
    """The first label word of a reply ("Image." -> image); None when there is none."""
    for word in _WORD.findall(reply.lower()):
        if word in LABELS:
            return word
        if word.endswith("s") and word[:-1] in LABELS:  # "images", "clips"
            return word[:-1]
    return None
