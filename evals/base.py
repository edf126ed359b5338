"""What an ``mmrag eval`` or ``mmrag bench`` run hands back, and the service it runs on.

Evaluations compute; surfaces show. Each command's work is one function of its module
in ``evals/`` that returns a :class:`Report`; ``app/cli.py`` only parses the options,
calls it and prints the report, so an evaluation can be run (and tested) without the
command line, and the command line holds no evaluation logic.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rich.console import RenderableType
from rich.table import Table

from retrieval.errors import MmragError

if TYPE_CHECKING:
    from app.service import Service
    from app.settings import Settings

T = TypeVar("T")


@dataclass(frozen=True)
class Report:
    """One run's result.

    ``figures`` are JSON-ready and are what ``--json`` writes (:meth:`saved`); ``shown``
    is what the terminal gets: a rich table, or a mapping printed as JSON (the benches
    show their figures). ``ensure_ascii`` keeps each command's file byte for byte as it
    was: the runs that store answers and passages write them unescaped. ``failed``
    means exit code 1 after showing (the crash bench found a loss or a corruption).
    """

    figures: Any
    shown: RenderableType | Mapping[str, Any]
    ensure_ascii: bool = True
    failed: bool = False

    @classmethod
    def of_figures(cls, figures: Mapping[str, Any]) -> Report:
        """A run whose terminal output is its figures (the benches)."""
        return cls(figures, figures)

    def saved(self) -> str:
        """The text of the ``--json`` file."""
        return json.dumps(self.figures, indent=2, ensure_ascii=self.ensure_ascii)


def service_with(settings: Settings, **changes: Any) -> Service:
    """A service on ``settings`` with some fields changed (a generator backend, a data
    folder of the evaluation's own), so a run never touches the configured index unless
    it means to."""
    from app.service import Service

    return Service(settings.model_copy(update=changes))


def read_jsonl(
    path: Path, parse: Callable[[int, Any], T], *, kind: str, row: str = "a JSON object"
) -> list[T]:
    """``parse(line number, value)`` of every non-blank line of a JSON-lines file.

    A missing file is "missing {kind} file: PATH"; a line that is not JSON, or that
    ``parse`` rejects (a missing key, a wrong type, a ``ValueError``), is
    "PATH:N: not {row} (why)". Lines are split on line ends only, as JSON writers mean
    them (a raw U+2028 inside a string is not one).
    """
    if not path.is_file():
        raise MmragError(f"missing {kind} file: {path}")
    out: list[T] = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(parse(number, json.loads(line)))
            except (KeyError, TypeError, ValueError) as e:  # JSONDecodeError is a ValueError
                raise MmragError(f"{path}:{number}: not {row} ({e})") from e
    return out


def methods_table(
    title: str, methods: Mapping[str, Mapping[str, float]], columns: Sequence[str], digits: int
) -> Table:
    """One row per method, one right-aligned column per measure."""
    table = Table(title=title)
    table.add_column("method")
    for c in columns:
        table.add_column(c, justify="right")
    for method, figures in methods.items():
        table.add_row(method, *(f"{figures[c]:.{digits}f}" for c in columns))
    return table
