"""The terminal the commands write to: results on stdout, progress and errors on stderr,
and our own errors as one red sentence with exit code 2 (no traceback)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import typer
from rich.console import Console

from retrieval.errors import MmragError

console = Console()
err = Console(stderr=True)
T = TypeVar("T")


def run(fn: Callable[[], T], passing: type[Exception] | None = None) -> T:
    """``fn()``; an ``MmragError`` (other than ``passing``) ends the command with exit 2."""
    try:
        return fn()
    except MmragError as e:
        if passing is not None and isinstance(e, passing):
            raise
        err.print(f"[bold red]error:[/] {e}")
        raise typer.Exit(2) from None
