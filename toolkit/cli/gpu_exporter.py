"""``asrtk gpu-exporter``: NVML metrics under DCGM names, for hosts without dcgm-exporter."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from toolkit.cli._common import console, handle_errors
from toolkit.errors import GpuUnavailable, UsageError
from toolkit.units import is_loopback


def register(app: typer.Typer) -> None:
    app.command("gpu-exporter")(gpu_exporter)


@handle_errors
def gpu_exporter(
    port: Annotated[int, typer.Option("--port", help="Port to serve /metrics on (dcgm-exporter uses 9400).")] = 9400,
    host: Annotated[str, typer.Option("--host", help="Address to bind. Beyond loopback (e.g. 0.0.0.0, so that Prometheus on another host can scrape) a --token-file is required.")]
    = "127.0.0.1",
    token_file: Annotated[Optional[Path], typer.Option("--token-file", help="File holding a bearer token (printable ASCII, one line); scrapes then need 'Authorization: Bearer <token>' (Prometheus: authorization.credentials_file). Env ASRTK_EXPORTER_TOKEN holds the token itself.")] = None,
    once: Annotated[bool, typer.Option("--once", help="Print one scrape to stdout and exit.")] = False,
) -> None:
    """Serve NVIDIA GPU metrics (utilization, memory, power, SM clock, temperature) read through NVML,
    with dcgm-exporter's metric names and labels, so asrtk's GPU dashboard and alerts work unchanged.

    Examples:

      asrtk gpu-exporter --port 9400                                  # loopback: a local Prometheus

      asrtk gpu-exporter --host 0.0.0.0 --token-file /etc/asrtk/exporter.token
    """
    from prometheus_client import CollectorRegistry, generate_latest

    from toolkit import nvml
    from toolkit.gpu_exporter import GpuCollector

    if not 0 <= port < 65536:
        raise UsageError(f"--port must be 0-65535, got {port}")
    token = _token(token_file)
    if token is None and not is_loopback(host):
        raise UsageError(f"--host {host} listens beyond loopback: pass --token-file FILE (or ASRTK_EXPORTER_TOKEN) "
                         "so that only a scraper holding the token reads this host's metrics")
    try:
        count = nvml.device_count()
    except nvml.NvmlUnavailable as exc:
        raise GpuUnavailable(f"no GPU to export: {exc}") from exc
    registry = CollectorRegistry(auto_describe=True)
    registry.register(GpuCollector())
    if once:
        typer.echo(generate_latest(registry).decode(), nl=False)
        return
    import signal
    import threading

    from toolkit.gpu_exporter import serve_metrics

    try:
        server = serve_metrics(registry, host, port, token)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port") from exc
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    auth = " (bearer token required)" if token else ""
    console.print(f"exporting {count} GPU(s) on http://{host}:{server.server_port}/metrics{auth} (Ctrl-C to stop)")
    try:
        stop.wait()
    finally:
        server.shutdown()


def _token(path: Path | None) -> str | None:
    if path is not None:
        try:
            token = path.read_text().strip()
        except OSError as exc:
            raise UsageError(f"--token-file {path}: cannot read it ({exc.strerror})") from exc
    else:
        token = os.environ.get("ASRTK_EXPORTER_TOKEN", "").strip()
        if not token:
            return None
    if not token or not all(0x21 <= ord(c) <= 0x7E for c in token):
        raise UsageError("the exporter token must be one line of printable ASCII without spaces")
    return token
