"""Shared CLI plumbing: consoles, error rendering and exit codes."""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable, TypeVar

import typer
from rich.console import Console

from toolkit.errors import AsrtkError

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


class _State:
    debug = False


state = _State()


def handle_errors(func: F) -> F:
    """Turn an :class:`AsrtkError` into one line on stderr and its exit code.

    With ``asrtk --debug`` the traceback is printed as well.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except AsrtkError as exc:
            if state.debug:
                err_console.print_exception()
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]
