"""``mmrag eval grounding``: answers over given passages, as RGB (Chen et al., 2024) poses them.

Each row of ``rgb_fact.jsonl`` has a question, its answer (a string, or groups of
accepted spellings that must all be matched), correct passages (``positive``),
distractors (``negative``) and counterfactual copies of the correct passages with the
answer replaced (``positive_wrong``, ``fakeanswer``). Three conditions, each the same
code path as the app (:func:`generation.answer.write_answer` + ``check_answer``):

- **clean**: the first three correct passages;
- **noisy**: two correct passages among three distractors, in a fixed shuffled order;
- **conflict**: two correct passages and two counterfactual ones, shuffled.

Measured per backend: accuracy (the answer contains the gold answer) in clean and noisy;
in conflict, the share where the conflict was *flagged* (found among the sources and
returned with the answer), the share where the answer *states* it (gives both versions,
or says that the sources disagree), and the share that gives only the fake answer.
Time to first token and streamed pieces per second (one piece is one token for both
backends) come from the same calls.
"""

from __future__ import annotations

import random
import re
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from evals.base import Report, read_jsonl, service_with
from generation.answer import check_answer, write_answer
from generation.base import Generator, Source
from retrieval.base import Corpus, Hit, Item

CONDITIONS = ("clean", "noisy", "conflict")
_DISAGREE = re.compile(r"\b(disagree|conflict|contradict|differ|inconsistent)", re.IGNORECASE)


@dataclass(frozen=True)
class Case:
    id: str
    query: str
    answer: list[list[str]]  # groups; each group: accepted spellings
    fake: str
    positive: list[str]
    negative: list[str]
    wrong: list[str]


def load_cases(path: Path) -> list[Case]:
    def case(number: int, row: Any) -> Case:
        answer = row["answer"]
        groups = [[answer]] if isinstance(answer, str) else [list(g) for g in answer]
        return Case(
            str(row.get("id", number)),
            row["query"],
            groups,
            str(row.get("fakeanswer", "")),
            list(row["positive"]),
            list(row.get("negative", [])),
            list(row.get("positive_wrong", [])),
        )

    return read_jsonl(path, case, kind="grounding evaluation", row="an RGB row")


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def contains(text: str, groups: Sequence[Sequence[str]]) -> bool:
    """Every group has a spelling in the text (case and punctuation ignored)."""
    have = f" {_norm(text)} "
    return all(any(f" {_norm(a)} " in have for a in group) for group in groups)


def passages(case: Case, condition: str) -> list[str]:
    rng = random.Random(f"{case.id}:{condition}")  # the same order on every run
    if condition == "clean":
        return case.positive[:3]
    if condition == "noisy":
        chosen = case.positive[:2] + case.negative[:3]
    else:
        chosen = case.positive[:2] + case.wrong[:2]
    rng.shuffle(chosen)
    return chosen


def as_sources(case: Case, texts: Sequence[str]) -> list[Source]:
    return [
        Source(
            n,
            Hit(
                Item(
                    id=f"rgb-{case.id}-{n}",
                    corpus=Corpus.PARAGRAPH,
                    text=text,
                    source=f"rgb/{case.id}/passage-{n}",
                    content_hash="0" * 64,
                ),
                score=1.0,
            ),
        )
        for n, text in enumerate(texts, 1)
    ]


def evaluate_backend(
    llm: Generator,
    cases: Sequence[Case],
    *,
    max_tokens: int = 96,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Figures of one generator over every case and condition."""
    right = {c: 0 for c in ("clean", "noisy")}
    flagged = stated = fake_only = 0
    first: list[float] = []
    rates: list[float] = []
    examples: list[dict[str, Any]] = []
    for i, case in enumerate(cases, 1):
        for condition in CONDITIONS:
            sources = as_sources(case, passages(case, condition))
            draft = write_answer(llm, case.query, sources, max_tokens=max_tokens, temperature=0)
            answer = check_answer(draft, sources)
            if draft.first_token_s is not None:
                first.append(draft.first_token_s)
                generating = draft.seconds - draft.first_token_s
                if draft.deltas > 1 and generating > 0:
                    rates.append((draft.deltas - 1) / generating)
            has_true = contains(answer.text, case.answer)
            if condition in right:
                right[condition] += has_true
            else:
                has_fake = bool(case.fake) and contains(answer.text, [[case.fake]])
                flagged += bool(answer.conflicts)
                stated += (has_true and has_fake) or bool(_DISAGREE.search(answer.text))
                fake_only += has_fake and not has_true
            examples.append({"id": case.id, "condition": condition, "answer": answer.text})
        if progress:
            progress(f"{i}/{len(cases)}")
    n = max(len(cases), 1)
    return {
        "n": len(cases),
        "accuracy_clean": round(right["clean"] / n, 4),
        "accuracy_noisy": round(right["noisy"] / n, 4),
        "conflict_flagged": round(flagged / n, 4),
        "conflict_stated": round(stated / n, 4),
        "fake_only": round(fake_only / n, 4),
        # The median (mean of the middle two), not evals.metrics' nearest-rank p50: the
        # published grounding figures were taken this way.
        "first_token_ms_p50": round(statistics.median(first) * 1000, 1) if first else None,
        "tokens_per_s": round(statistics.median(rates), 1) if rates else None,
        "answers": examples,
    }


def evaluate_grounding(
    data: Path,
    backends: Mapping[str, Callable[[], Generator]],
    *,
    console: Console | None = None,
) -> dict[str, Any]:
    cases = load_cases(data)
    out: dict[str, Any] = {"data": str(data), "n": len(cases), "backends": {}}
    for name, make in backends.items():
        llm = make()
        if console:
            console.print(f"{name}: {llm.name}, {len(cases)} questions x {len(CONDITIONS)}")
        out["backends"][name] = {"model": llm.name, **evaluate_backend(llm, cases)}
    return out


def grounding_table(results: Mapping[str, Any]) -> Table:
    table = Table(title=f"Grounding on {results['data']} ({results['n']} questions)")
    table.add_column("measure")
    names = list(results["backends"])
    for name in names:
        table.add_column(name, justify="right")
    rows = [
        ("accuracy, correct passages only", "accuracy_clean"),
        ("accuracy, correct + distracting passages", "accuracy_noisy"),
        ("counterfactual: conflict flagged", "conflict_flagged"),
        ("counterfactual: answer states the conflict", "conflict_stated"),
        ("counterfactual: answer gives only the fake", "fake_only"),
        ("time to first token, p50 (ms)", "first_token_ms_p50"),
        ("tokens/s while streaming, median", "tokens_per_s"),
    ]
    for label, key in rows:
        table.add_row(label, *(str(results["backends"][n][key]) for n in names))
    return table


BACKENDS = ("llamacpp", "openai")


def grounding_report(
    data: Path, backends: Sequence[str], *, console: Console | None = None
) -> Report:
    """``mmrag eval grounding``: each backend's generator (one of :data:`BACKENDS`) built on
    first use from the same settings, so the backends differ in nothing else."""
    from app.settings import Settings

    base = Settings()

    def generator_of(name: str) -> Callable[[], Generator]:
        return lambda: service_with(base, generator=name).generator

    results = evaluate_grounding(data, {n: generator_of(n) for n in backends}, console=console)
    return Report(results, grounding_table(results), ensure_ascii=False)
