"""``python -m reference_server``: the same flags as ``asrtk serve``."""

from __future__ import annotations

import typer

from toolkit.cli._common import handle_errors
from toolkit.cli.serve import serve

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command()(handle_errors(serve))

if __name__ == "__main__":
    app(prog_name="python -m reference_server")
