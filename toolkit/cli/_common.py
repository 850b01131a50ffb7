"""Shared CLI plumbing: consoles, error rendering and exit codes."""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable, TypeVar

import typer
from rich.console import Console
from typer.core import TyperOption

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


def reflow(doc: str | None) -> str | None:
    """Help text that reflows: the lines of a prose paragraph are joined (the terminal wraps
    them), while indented paragraphs (examples) keep their lines. Typer's rich help keeps every
    newline of a docstring, which breaks sentences at the source's 100th column."""
    if not doc:
        return doc
    import inspect

    out = []
    for para in inspect.cleandoc(doc).split("\n\n"):
        lines = para.splitlines()
        if any(line.startswith((" ", "\t")) for line in lines) or any(line.rstrip().endswith("\\") for line in lines):
            out.append(para)
        else:
            out.append(" ".join(line.strip() for line in lines))
    return "\n\n".join(out)


def reflow_help(app: typer.Typer) -> None:
    """Apply :func:`reflow` to every command and group of ``app`` (recursively)."""
    for cmd in app.registered_commands:
        if cmd.callback is not None:
            cmd.callback.__doc__ = reflow(cmd.callback.__doc__)
        if cmd.help:
            cmd.help = reflow(cmd.help)
    if app.registered_callback is not None and app.registered_callback.callback is not None:
        cb = app.registered_callback.callback
        cb.__doc__ = reflow(cb.__doc__)
    for group in app.registered_groups:
        if group.typer_instance is not None:
            reflow_help(group.typer_instance)


# Typer (0.2x) shows boolean flags with a type, as in ``--quiet <bool>``, though they take no
# value: show them as plain flags. Options that take a value are unchanged.
_display_type_rich = TyperOption.display_type_rich


def _flag_display_type_rich(self: TyperOption, ctx: Any) -> str | None:
    if getattr(self, "is_flag", False) and not getattr(self, "count", False):
        return None
    return _display_type_rich(self, ctx)


TyperOption.display_type_rich = _flag_display_type_rich  # type: ignore[method-assign]


def read_hosts(value: str) -> tuple[Any, str]:
    """``--hosts FILE|LIST``: an inventory file (one ``HOST:PORT [weight=N] [backup]`` per line), or
    the same entries comma-separated on the command line. Returns (hosts, where they came from)."""
    from pathlib import Path

    from toolkit.capacity.inventory import LINE_FORM, parse_hosts
    from toolkit.errors import ConfigError

    path = Path(value)
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--hosts {value} cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
        return parse_hosts(text, str(path)), str(path)
    if ":" not in value:
        raise ConfigError(f"--hosts {value}: no such file, and {value!r} is not HOST:PORT[:WEIGHT]; give a file "
                          f"with one {LINE_FORM} per line, or a list like 10.0.0.1:8000,10.0.0.2:8000")
    return parse_hosts(value, "list", is_list=True), "list"
