"""``asrtk gpu-exporter``: NVML metrics under DCGM names, for hosts without dcgm-exporter."""

from __future__ import annotations

from typing import Annotated

import typer

from toolkit.cli._common import console, handle_errors
from toolkit.errors import GpuUnavailable, UsageError


def register(app: typer.Typer) -> None:
    app.command("gpu-exporter")(gpu_exporter)


@handle_errors
def gpu_exporter(
    port: Annotated[int, typer.Option("--port", help="Port to serve /metrics on (dcgm-exporter uses 9400).")] = 9400,
    host: Annotated[str, typer.Option("--host", help="Address to bind; 0.0.0.0 lets Prometheus on another host scrape.")]
    = "0.0.0.0",
    once: Annotated[bool, typer.Option("--once", help="Print one scrape to stdout and exit.")] = False,
) -> None:
    """Serve NVIDIA GPU metrics (utilization, memory, power, SM clock, temperature) read through NVML,
    with dcgm-exporter's metric names and labels, so asrtk's GPU dashboard and alerts work unchanged.

    Example:

      asrtk gpu-exporter --port 9400
    """
    from prometheus_client import CollectorRegistry, generate_latest

    from toolkit import nvml
    from toolkit.gpu_exporter import GpuCollector

    if not 0 <= port < 65536:
        raise UsageError(f"--port must be 0-65535, got {port}")
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

    from prometheus_client import start_http_server

    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port") from exc
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    console.print(f"exporting {count} GPU(s) on http://{host}:{server.server_port}/metrics (Ctrl-C to stop)")
    try:
        stop.wait()
    finally:
        server.shutdown()
