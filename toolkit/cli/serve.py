"""``asrtk serve``: run the reference inference server (ASR, emotion, TTS over HTTP/WebSocket).

The command itself lives with the server (:mod:`reference_server.cli`); the CLI layer only
registers it, so the dependency points one way.
"""

from __future__ import annotations

import typer

from reference_server.cli import serve
from toolkit.cli._common import handle_errors


def register(app: typer.Typer) -> None:
    app.command("serve")(handle_errors(serve))
