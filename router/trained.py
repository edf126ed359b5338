"""The trained modality-aware router: well under a millisecond of numpy on one embedding.

Why this recipe (its cross-validation is recorded in ``router/model/router.json``):
three linear models each see the question from a different side, and a fourth one
(the *meta* model) learns how far to trust each of them per label (stacking):

- **lexical**: TF-IDF of lower-cased word 1-2-grams and of case-kept character 1-5-grams
  inside word boundaries. Case matters: Natural Questions write names in lower case,
  HotpotQA is dense with capitalised names; characters also catch timestamps (``21:57``)
  and names the embedding model has never seen.
- **semantic**: the all-MiniLM-L6-v2 sentence embedding the app already computes for
  retrieval ("how do I ..." -> video, "what colour ..." -> image, whatever the words).
- **shape**: a few dozen hand features a bag of n-grams cannot count: length, share of
  capitalised words and their spans, relative clauses inside the question (multi-hop
  ``document`` questions chain "the company that ... the person who ..."), years and
  timestamps, a trailing colon (exam-style ``no`` questions), cue words.

Each base model is fitted on its own (regularised for its own scale); the meta model is
fitted on their out-of-fold log-probabilities, so it learns how reliable each one is on
questions it did not train on. On the 2,425 labelled questions this beats one logistic
regression over all features concatenated by about a point of accuracy and two of
macro-F1 (5-fold cross-validation). The weights are fitted on those questions plus 90
hand-written phrasings (``scripts/train_router.py`` says why): benchmark questions never
say "show me a picture of ..." or "how do I ...", and users do.

Everything that runs at query time is plain numpy over arrays in an ``.npz`` and a JSON
vocabulary: no pickle (unsafe to load, fragile across library versions) and no
scikit-learn at run time. scikit-learn is needed only to *fit* (:func:`fit`, used by
``scripts/train_router.py`` and the cross-validation in ``evals.router``).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from retrieval.base import Corpus, TextEncoder, Vectors
from retrieval.errors import ModelError
from router.base import EXCLUSIVE, LABELS, NO_RETRIEVAL, Route, decide

Array = npt.NDArray[np.float64]

FORMAT_VERSION = 1
WEIGHTS_FILE = "router.npz"
META_FILE = "router.json"

# Only the first words are embedded: the embedding's cost grows with the tokens (about
# 7 ms for 8 tokens, 15 ms for 64, 45 ms for 250 on two cores), the questions that are
# longer than this are exam-style ``no`` questions whose opening already gives them away,
# and the lexical and shape features still read the whole question.
EMBED_MAX_WORDS = 32

# Fixed hyper-parameters of the recipe (chosen by 5-fold cross-validation; see fit()).
WORD_NGRAMS = (1, 2)
CHAR_NGRAMS = (1, 5)
MIN_DF = 2
C_LEXICAL = 10.0
C_SEMANTIC = 10.0
C_SHAPE = 1.0
C_META = 1.0
INNER_FOLDS = 5
# An extra corpus searched "costs" this fraction of a missed one when thresholds are
# tuned: a label is worth adding when it is right about this often. Searching one more
# corpus is cheap (tens of ms, and the select step reranks), missing the right one loses
# the answer; 0.25 keeps nearly every route to one corpus (see fit()).
EXTRA_CORPUS_COST = 0.25
NO_THRESHOLD = 0.5
THRESHOLD_GRID = (0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6)
DEFAULT_UNSURE_BELOW = 0.6

_TOKEN = re.compile(r"(?u)\b\w\w+\b")
_SPACES = re.compile(r"\s+")
_WORD = re.compile(r"\w+(?:['’]\w+)?")
# A run of capitalised words, allowing the small words inside names ("Bank of America").
_CAP_SPAN = re.compile(
    r"\b[A-Z][\w'’.-]*(?:\s+(?:of|the|de|and|van|von|der|la|le|du|&)?\s*[A-Z][\w'’.-]*)*"
)
_YEAR = re.compile(r"\b(?:1[5-9]\d\d|20\d\d)\b")
_TIMESTAMP = re.compile(r"\b\d{1,3}:\d{2}\b|\bmark\b")
_RELATIVE = frozenset({"who", "whom", "whose", "which", "that", "where", "when", "what"})
_STOP = frozenset(
    {"the", "a", "an", "of", "in", "on", "at", "to", "for", "by", "with", "from", "and", "or",
     "is", "was", "were", "are", "be", "been", "did", "does", "do"}
)  # fmt: skip
# Words whose presence shifts the label; a linear model on counts alone cannot see them.
_CUES = (
    "both", "same", "and", "or", "which", "first", "also", "who", "whom", "what", "when",
    "where", "how", "why", "is", "was", "were", "are", "the", "of", "a", "in", "by", "that",
    "this", "named", "known", "between", "more", "older", "younger", "born", "located",
    "founded", "video", "clip", "scene", "episode", "shown", "show", "picture", "image",
    "photo", "color", "colour", "look", "looks", "appear", "displayed", "wearing", "steps",
    "step", "process", "procedure", "guide", "way", "make", "making", "after", "before",
    "during", "mark", "how many", "what color",
)  # fmt: skip


def word_ngrams(text: str) -> list[str]:
    """Lower-cased word unigrams and bigrams (tokens of two or more word characters)."""
    tokens = _TOKEN.findall(text.lower())
    return tokens + [f"{a} {b}" for a, b in pairwise(tokens)]


def char_ngrams(text: str) -> list[str]:
    """Case-kept character 1-5-grams inside space-padded words (scikit-learn's char_wb)."""
    lo, hi = CHAR_NGRAMS
    grams: list[str] = []
    for word in _SPACES.sub(" ", text).split():
        padded = f" {word} "
        for n in range(lo, min(hi, len(padded)) + 1):
            grams.extend(padded[i : i + n] for i in range(len(padded) - n + 1))
    return grams


def shape_features(text: str) -> list[float]:
    """The hand features of one question (order fixed by :data:`SHAPE_FEATURES`)."""
    words = _WORD.findall(text)
    lower = [w.lower() for w in words]
    n = max(len(words), 1)
    stripped = text.rstrip()
    capitalised = [w for w in words[1:] if w[:1].isupper()]
    spans = _CAP_SPAN.findall(text[1:])
    padded = f" {' '.join(lower)} "
    values = [
        math.log1p(len(words)),
        math.log1p(len(text)),
        len(capitalised) / n,
        math.log1p(len(capitalised)),
        math.log1p(len(spans)),
        float(stripped.endswith("?")),
        float(stripped.endswith(":")),
        float(" ?" in text),
        float(text[:1].islower()),
        5 * text.count(",") / n,
        float('"' in text or "“" in text),
        float(bool(_YEAR.search(text))),
        float(bool(_TIMESTAMP.search(text))),
        5 * sum(w.isdigit() for w in words) / n,
        float("|" in text),
        float("\n" in text),
        *(float(f" {cue} " in padded) for cue in _CUES),
        float(sum(w in _RELATIVE for w in lower[1:])),
        float(sum(w.endswith(("'s", "’s")) for w in words)),
        sum(len(w) for w in words) / n,
        sum(w in _STOP for w in lower) / n,
        float("(" in text),
        float(max((len(s.split()) for s in spans), default=0)),
        float(lower.count("and")),
        sum(w[:1].isupper() for w in words) / n,
    ]
    return values


SHAPE_FEATURES: tuple[str, ...] = (
    "log_words", "log_chars", "capitalised_share", "log_capitalised", "log_name_spans",
    "ends_question_mark", "ends_colon", "space_before_question_mark", "starts_lower",
    "comma_rate", "has_quote", "has_year", "has_timestamp", "digit_rate", "has_pipe",
    "has_newline", *(f"cue:{c}" for c in _CUES), "relative_words", "possessives",
    "mean_word_length", "stop_word_share", "has_parenthesis", "longest_name_span",
    "and_count", "capitalised_share_all",
)  # fmt: skip


def embed_questions(encoder: TextEncoder, questions: Sequence[str]) -> Vectors:
    """The router's view of the questions in the encoder's space (first words only)."""
    return encoder.encode([" ".join(q.split()[:EMBED_MAX_WORDS]) for q in questions], query=True)


def _log_softmax(logits: Array) -> Array:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return np.asarray(shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True)))


@dataclass(frozen=True)
class Linear:
    """A multinomial logistic regression's weights, columns in :data:`LABELS` order."""

    coef: Array  # (features, labels)
    intercept: Array  # (labels,)

    def logits(self, x: Array) -> Array:
        return np.asarray(x @ self.coef + self.intercept)


@dataclass(frozen=True)
class Vocabulary:
    """A fitted TF-IDF vocabulary: n-gram -> column, and each column's idf."""

    index: Mapping[str, int]
    idf: Array

    def weights(self, grams: Sequence[str]) -> tuple[npt.NDArray[np.intp], Array]:
        """Columns and L2-normalised sublinear tf-idf weights of one text's n-grams.

        The same arithmetic as scikit-learn's ``TfidfVectorizer(sublinear_tf=True)``,
        which fitted the weights, so what ships behaves as what was cross-validated.
        """
        counts = Counter(g for g in grams if g in self.index)
        if not counts:
            return np.zeros(0, dtype=np.intp), np.zeros(0)
        columns = np.fromiter((self.index[g] for g in counts), dtype=np.intp, count=len(counts))
        tf = 1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(counts)))
        values = tf * self.idf[columns]
        return columns, values / np.linalg.norm(values)


@dataclass(frozen=True)
class RouterWeights:
    """Everything the trained router needs, loadable without pickle.

    ``thresholds`` are per label (a label is chosen when its probability reaches its
    threshold); ``info`` records how the weights were made (data, seed, scores) and is
    shown, not used.
    """

    encoder_name: str
    words: Vocabulary
    chars: Vocabulary
    lexical: Linear  # rows: word columns, then char columns
    semantic: Linear
    shape_mean: Array
    shape_scale: Array
    shape: Linear
    meta: Linear  # rows: lexical, semantic, shape log-probabilities, LABELS order each
    thresholds: Mapping[str, float]
    info: Mapping[str, Any] = field(default_factory=dict)

    def probabilities(self, questions: Sequence[str], embeddings: Vectors) -> Array:
        """Each question's probability of each label, (questions, LABELS) in that order."""
        n = len(questions)
        lexical = np.tile(self.lexical.intercept, (n, 1))
        offset = len(self.words.index)
        for row, question in enumerate(questions):
            columns, values = self.words.weights(word_ngrams(question))
            lexical[row] += values @ self.lexical.coef[columns]
            columns, values = self.chars.weights(char_ngrams(question))
            lexical[row] += values @ self.lexical.coef[columns + offset]
        shape = np.array([shape_features(q) for q in questions], dtype=np.float64)
        shape = (shape - self.shape_mean) / self.shape_scale
        stacked = np.hstack(
            [
                _log_softmax(lexical),
                _log_softmax(self.semantic.logits(embeddings.astype(np.float64))),
                _log_softmax(self.shape.logits(shape)),
            ]
        )
        return np.exp(_log_softmax(self.meta.logits(stacked)))

    def save(self, folder: Path) -> list[Path]:
        """Write ``router.npz`` (arrays) and ``router.json`` (vocabularies, thresholds)."""
        folder.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Array] = {
            "word_idf": self.words.idf,
            "char_idf": self.chars.idf,
            "shape_mean": self.shape_mean,
            "shape_scale": self.shape_scale,
        }
        for name, linear in (
            ("lexical", self.lexical),
            ("semantic", self.semantic),
            ("shape", self.shape),
            ("meta", self.meta),
        ):
            arrays[f"{name}_coef"] = linear.coef
            arrays[f"{name}_intercept"] = linear.intercept
        # float32 halves the file; the probabilities move by less than 1e-6.
        stored: dict[str, Any] = {k: v.astype(np.float32) for k, v in arrays.items()}
        np.savez_compressed(folder / WEIGHTS_FILE, **stored)
        meta = {
            "format": FORMAT_VERSION,
            "labels": list(LABELS),
            "encoder": self.encoder_name,
            "embed_max_words": EMBED_MAX_WORDS,
            "shape_features": list(SHAPE_FEATURES),
            "thresholds": dict(self.thresholds),
            "info": dict(self.info),
            "word_vocabulary": sorted(self.words.index, key=self.words.index.__getitem__),
            "char_vocabulary": sorted(self.chars.index, key=self.chars.index.__getitem__),
        }
        (folder / META_FILE).write_text(
            json.dumps(meta, ensure_ascii=False, separators=(",", ":")), encoding="utf-8"
        )
        return [folder / WEIGHTS_FILE, folder / META_FILE]

    @classmethod
    def load(cls, folder: Path | None = None) -> RouterWeights:
        """Read the weights from ``folder`` (default: the ones shipped in the package)."""
        base = folder if folder is not None else Path(str(resources.files("router") / "model"))
        try:
            meta = json.loads((base / META_FILE).read_text(encoding="utf-8"))
            with np.load(base / WEIGHTS_FILE, allow_pickle=False) as npz:
                a = {k: np.asarray(npz[k], dtype=np.float64) for k in npz.files}
        except (OSError, ValueError, KeyError) as e:
            raise ModelError(
                f"the trained router's weights cannot be read from {base}: {e} "
                "(python scripts/train_router.py writes them)"
            ) from e
        if meta.get("format") != FORMAT_VERSION or tuple(meta.get("labels", ())) != LABELS:
            raise ModelError(
                f"the router weights in {base} are of another format or label set "
                f"({meta.get('format')}, {meta.get('labels')}); retrain them"
            )
        if tuple(meta.get("shape_features", ())) != SHAPE_FEATURES:
            raise ModelError(f"the router weights in {base} use other hand features; retrain them")

        def linear(name: str) -> Linear:
            return Linear(a[f"{name}_coef"], a[f"{name}_intercept"])

        words = {g: i for i, g in enumerate(meta["word_vocabulary"])}
        chars = {g: i for i, g in enumerate(meta["char_vocabulary"])}
        weights = cls(
            encoder_name=str(meta["encoder"]),
            words=Vocabulary(words, a["word_idf"]),
            chars=Vocabulary(chars, a["char_idf"]),
            lexical=linear("lexical"),
            semantic=linear("semantic"),
            shape_mean=a["shape_mean"],
            shape_scale=a["shape_scale"],
            shape=linear("shape"),
            meta=linear("meta"),
            thresholds={str(k): float(v) for k, v in meta["thresholds"].items()},
            info=meta.get("info", {}),
        )
        if weights.lexical.coef.shape[0] != len(words) + len(chars):
            raise ModelError(f"the router weights in {base} do not match their vocabulary")
        return weights


def _reason(scores: Mapping[str, float], thresholds: Mapping[str, float]) -> str:
    """Why these labels, in a phrase: "image 0.91 >= 0.35" (before empty corpora drop)."""
    passing = [label for label in LABELS if scores[label] >= thresholds[label]]
    for a, b in EXCLUSIVE:
        if a.value in passing and b.value in passing:
            passing.remove(b.value if scores[a.value] >= scores[b.value] else a.value)
    if len(passing) > 1 and NO_RETRIEVAL in passing:
        passing.remove(NO_RETRIEVAL)
    if not passing:
        top = max(LABELS, key=scores.__getitem__)
        return f"top {top} {scores[top]:.2f} (none reaches its threshold)"
    return ", ".join(f"{label} {scores[label]:.2f} >= {thresholds[label]:.2f}" for label in passing)


class TrainedRouter:
    """Routes a question by the shipped stacked linear model over one MiniLM embedding.

    Give it the text encoder the app already holds (so the model loads once); the
    weights come from the package unless ``weights`` is given. The decision rule is
    :func:`router.base.decide` with the per-label thresholds saved with the weights.
    ``is_unsure(route)`` tells a caller when to ask a slower router instead: the top
    probability is below ``unsure_below`` (0.6: about 4% of questions in
    cross-validation, which are right only about half the time, against 95% for the rest).
    """

    name = "trained"

    def __init__(
        self,
        encoder: TextEncoder,
        weights: RouterWeights | None = None,
        *,
        unsure_below: float = DEFAULT_UNSURE_BELOW,
    ) -> None:
        self.weights = weights if weights is not None else RouterWeights.load()
        dim = self.weights.semantic.coef.shape[0]
        if encoder.info.name != self.weights.encoder_name or encoder.info.dim != dim:
            raise ModelError(
                f"the trained router was fitted on {self.weights.encoder_name} embeddings "
                f"({dim} dimensions), but the text encoder is {encoder.info.describe()}; "
                "use the llm router or retrain with scripts/train_router.py"
            )
        if not 0.0 <= unsure_below <= 1.0:
            raise ValueError(f"unsure_below must lie in [0, 1], not {unsure_below}")
        self.encoder = encoder
        self.unsure_below = unsure_below

    @property
    def thresholds(self) -> Mapping[str, float]:
        return self.weights.thresholds

    def probabilities(self, questions: Sequence[str]) -> Array:
        """Probabilities of every label, one row per question, columns in LABELS order."""
        if not questions:
            return np.zeros((0, len(LABELS)))
        return self.weights.probabilities(questions, embed_questions(self.encoder, questions))

    def route(self, question: str, available: Mapping[Corpus, int]) -> Route:
        row = self.probabilities([question])[0]
        scores = {label: round(float(p), 4) for label, p in zip(LABELS, row, strict=True)}
        return decide(
            scores,
            available,
            threshold=self.weights.thresholds,
            reason=_reason(scores, self.weights.thresholds),
        )

    def is_unsure(self, route: Route) -> bool:
        """Whether the route's top probability is below ``unsure_below``."""
        return max(route.scores.values(), default=0.0) < self.unsure_below


# --- fitting (scikit-learn, imported lazily: not needed to route) -------------------


def _require_sklearn() -> Any:
    try:
        import sklearn
    except ImportError as e:  # pragma: no cover - a dependency of sentence-transformers
        raise ModelError("fitting the router needs scikit-learn: pip install scikit-learn") from e
    return sklearn


def _linear(model: Any) -> Linear:
    return Linear(np.asarray(model.coef_.T, dtype=np.float64), np.asarray(model.intercept_))


def _vocabulary(vectorizer: Any) -> Vocabulary:
    index = {str(g): int(i) for g, i in vectorizer.vocabulary_.items()}
    return Vocabulary(index, np.asarray(vectorizer.idf_, dtype=np.float64))


def _hit(route: Route, label: str) -> bool:
    return not route.corpora if label == NO_RETRIEVAL else Corpus(label) in route.corpora


def tune_thresholds(
    probabilities: Array, labels: Sequence[str], *, cost: float = EXTRA_CORPUS_COST
) -> dict[str, float]:
    """Per-corpus thresholds that maximise hits minus ``cost`` per extra corpus searched.

    A hit is a route that includes the true label (for ``no``: searches nothing). Starts
    every corpus at ``cost`` (the right threshold if the probabilities were perfectly
    calibrated) and improves one at a time over a coarse grid, twice round. ``no`` stays
    at :data:`NO_THRESHOLD`: under ``decide`` a passing ``no`` wins whenever no corpus
    passes, and skipping retrieval for a question about the user's own files is the
    costliest mistake, so the router must be sure (a tuned ``no`` went down to 0.15).
    """
    everything = dict.fromkeys(Corpus, 1)
    rows = [dict(zip(LABELS, (float(p) for p in r), strict=True)) for r in probabilities]

    def gain(th: Mapping[str, float]) -> float:
        routes = [decide(s, everything, threshold=th) for s in rows]
        hits = sum(_hit(r, y) for r, y in zip(routes, labels, strict=True))
        extra = sum(max(len(r.corpora) - 1, 0) for r in routes)
        return (hits - cost * extra) / max(len(rows), 1)

    thresholds = {**dict.fromkeys(LABELS, cost), NO_RETRIEVAL: NO_THRESHOLD}
    best = gain(thresholds)
    for _ in range(2):
        for corpus in Corpus:
            for t in THRESHOLD_GRID:
                trial = {**thresholds, corpus.value: t}
                if (g := gain(trial)) > best + 1e-12:
                    best, thresholds = g, trial
    return thresholds


def fit(
    questions: Sequence[str],
    labels: Sequence[str],
    embeddings: Vectors,
    *,
    encoder_name: str,
    seed: int = 0,
    info: Mapping[str, Any] | None = None,
) -> RouterWeights:
    """Fit the stacked router on labelled questions (deterministic for a given seed).

    ``embeddings`` are :func:`embed_questions` of ``questions``. Every label of
    :data:`LABELS` must occur at least ``INNER_FOLDS`` times: the meta model is fitted on
    out-of-fold predictions of the base models.
    """
    _require_sklearn()
    from scipy import sparse
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    counts = Counter(labels)
    short = [label for label in LABELS if counts[label] < INNER_FOLDS]
    unknown = sorted(set(counts) - set(LABELS))
    if unknown or short:
        raise ValueError(
            f"every label needs >= {INNER_FOLDS} examples (short: {short}; unknown: {unknown})"
        )
    if len(questions) != len(labels) or len(questions) != len(embeddings):
        raise ValueError("questions, labels and embeddings differ in length")
    y = np.array([LABELS.index(label) for label in labels])  # classes_ == LABELS order
    texts = list(questions)

    def vectorizer(analyzer: Callable[[str], list[str]]) -> Any:
        return TfidfVectorizer(analyzer=analyzer, sublinear_tf=True, min_df=MIN_DF)

    words, chars = vectorizer(word_ngrams), vectorizer(char_ngrams)
    lexical_x = sparse.hstack([words.fit_transform(texts), chars.fit_transform(texts)]).tocsr()
    shape_raw = np.array([shape_features(q) for q in texts], dtype=np.float64)
    shape_mean = shape_raw.mean(axis=0)
    shape_scale = shape_raw.std(axis=0)
    shape_scale[shape_scale == 0] = 1.0
    bases = (
        (lexical_x, C_LEXICAL),
        (np.asarray(embeddings, dtype=np.float64), C_SEMANTIC),
        ((shape_raw - shape_mean) / shape_scale, C_SHAPE),
    )
    inner = StratifiedKFold(INNER_FOLDS, shuffle=True, random_state=seed)
    fitted: list[Linear] = []
    out_of_fold: list[Array] = []
    for x, c in bases:
        model = LogisticRegression(C=c, max_iter=5000)
        oof = cross_val_predict(model, x, y, cv=inner, method="decision_function")
        out_of_fold.append(_log_softmax(np.asarray(oof, dtype=np.float64)))
        fitted.append(_linear(model.fit(x, y)))
    stacked = np.hstack(out_of_fold)
    meta = _linear(LogisticRegression(C=C_META, max_iter=5000).fit(stacked, y))
    # The meta model has 19 x 6 parameters, so its in-sample probabilities on out-of-fold
    # inputs are close to out-of-sample ones: good enough to place the thresholds.
    probabilities = np.exp(_log_softmax(meta.logits(stacked)))
    return RouterWeights(
        encoder_name=encoder_name,
        words=_vocabulary(words),
        chars=_vocabulary(chars),
        lexical=fitted[0],
        semantic=fitted[1],
        shape_mean=shape_mean,
        shape_scale=shape_scale,
        shape=fitted[2],
        meta=meta,
        thresholds=tune_thresholds(probabilities, labels),
        info=dict(info or {}),
    )
