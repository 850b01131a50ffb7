"""``asrtk worker``: lend this machine's cores to an ``asrtk bench`` run on another machine."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from toolkit.cli._common import handle_errors
from toolkit.errors import UsageError


def worker(
    master: Annotated[str, typer.Option(help="Host of the machine running `asrtk bench --expect-workers N`.")],
    master_port: Annotated[int, typer.Option(help="The master's --master-port.")] = 5557,
    secret: Annotated[Optional[str], typer.Option(help="The master's cluster secret (its --secret); prefer $ASRTK_CLUSTER_SECRET, which ps does not show.")] = None,
) -> None:
    """Join a distributed `asrtk bench` run as one load-generator process.

    Start one per free core. Master and workers share a secret: the worker proves it before
    it is sent anything, and runs only what the master signed with it (JSON, never code); the
    request headers travel only to workers that proved it. On the master machine:

      export ASRTK_CLUSTER_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')

      asrtk bench -s mobile --target http://10.0.0.5:8000 --rate 400 --expect-workers 4 --master-bind 0.0.0.0 --master-port 5557

    then on each load machine, with the same ASRTK_CLUSTER_SECRET (audio from --audio-dir must
    exist there too):

      asrtk worker --master 10.0.0.2 --master-port 5557
    """
    if not 1 <= master_port <= 65535:
        raise UsageError(f"--master-port must be a TCP port (1-65535), got {master_port}")
    from toolkit.engine.distributed import worker_main

    code = worker_main(master, master_port, secret)
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("worker")(handle_errors(worker))
