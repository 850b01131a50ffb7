"""``asrtk``: the entry point. Parses global flags and registers one module per command.

Each command module exposes ``register(app: typer.Typer) -> None``. Modules must not
import Locust (or anything else heavy) at import time: ``asrtk --help`` stays fast and
gevent's monkey-patching happens only in the commands that generate load.
"""

from __future__ import annotations

import importlib
from typing import Annotated, Optional

import typer

from toolkit import __version__
from toolkit.cli._common import reflow_help, state

COMMAND_MODULES = [
    "toolkit.cli.serve",
    "toolkit.cli.doctor",
    "toolkit.cli.bench",
    "toolkit.cli.worker",
    "toolkit.cli.report",
    "toolkit.cli.results",
    "toolkit.cli.generate",
    "toolkit.cli.gpu_exporter",
    "toolkit.cli.sweep",
    "toolkit.cli.plan",
    "toolkit.cli.gate",
    "toolkit.cli.drill",
]

app = typer.Typer(
    name="asrtk",
    help=(
        "Capacity planning for speech-AI inference (ASR, TTS, emotion recognition).\n\n"
        "Measure what one worker carries (bench, sweep), size the fleet (plan), wire it "
        "(generate) and catch regressions (gate). Start with:\n\n"
        "  asrtk bench --scenario callcenter   # load-test the embedded reference server\n\n"
        "  asrtk doctor                        # what this machine can run"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"asrtk {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    state.debug = debug


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)
reflow_help(app)


def main() -> None:
    app()
