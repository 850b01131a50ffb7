"""NVML-based Prometheus exporter with DCGM-compatible metric names.

For hosts without DCGM: the same names, units and labels as NVIDIA's dcgm-exporter
(``gpu``, ``UUID``, ``device``, ``modelName``, ``Hostname``), so the generated dashboards
and alerts work with either. A custom collector: every scrape reads NVML once through an
injected sampler (``toolkit.nvml.sample_all`` by default; recorded samples in tests).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from toolkit.nvml import GpuSample, NvmlUnavailable

MiB = 2**20
LABELS = ("gpu", "UUID", "device", "modelName", "Hostname")


@dataclass(frozen=True)
class DcgmField:
    name: str
    help: str
    value: Callable[[GpuSample], float | None]


def _free_mib(s: GpuSample) -> float | None:
    if s.memory_total_bytes is None or s.memory_used_bytes is None:
        return None
    return (s.memory_total_bytes - s.memory_used_bytes) / MiB


# Units as DCGM reports them: %, MiB, W, MHz, C.
FIELDS: tuple[DcgmField, ...] = (
    DcgmField("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).",
              lambda s: None if s.utilization_ratio is None else s.utilization_ratio * 100.0),
    DcgmField("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).",
              lambda s: None if s.memory_used_bytes is None else s.memory_used_bytes / MiB),
    DcgmField("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", _free_mib),
    DcgmField("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", lambda s: s.power_watts),
    DcgmField("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).",
              lambda s: None if s.sm_clock_hz is None else s.sm_clock_hz / 1e6),
    DcgmField("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", lambda s: s.temperature_celsius),
)
METRIC_NAMES = tuple(f.name for f in FIELDS)


class GpuCollector(Collector):
    """``registry.register(GpuCollector())``; ``sampler`` returns one reading of every GPU."""

    def __init__(self, sampler: Callable[[], Sequence[GpuSample]] | None = None, hostname: str | None = None) -> None:
        if sampler is None:
            from toolkit import nvml

            sampler = nvml.sample_all
        self._sampler = sampler
        self.hostname = hostname or socket.gethostname()

    def describe(self) -> Iterator[Metric]:
        # Names only: registering must not touch NVML.
        for f in FIELDS:
            yield GaugeMetricFamily(f.name, f.help, labels=LABELS)

    def collect(self) -> Iterator[Metric]:
        try:
            samples = list(self._sampler())
        except NvmlUnavailable:
            samples = []  # the driver went away: expose nothing rather than stale numbers
        families = {f.name: GaugeMetricFamily(f.name, f.help, labels=LABELS) for f in FIELDS}
        for s in samples:
            labels = [str(s.index), s.uuid, f"nvidia{s.index}", s.name, self.hostname]
            for f in FIELDS:
                v = f.value(s)
                if v is not None:
                    families[f.name].add_metric(labels, float(v))
        yield from families.values()


def serve_metrics(registry: object, host: str, port: int, token: str | None) -> object:
    """Serve ``registry`` on ``http://host:port/metrics`` in a daemon thread; returns the server
    (``server_port``, ``shutdown()``). With ``token``, every request needs ``Authorization: Bearer
    <token>`` (Prometheus: ``authorization: {credentials_file: ...}`` in the scrape job), else 401."""
    import hmac
    import threading
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from prometheus_client import make_wsgi_app

    metrics_app = make_wsgi_app(registry)  # type: ignore[arg-type]
    expected = token.encode("ascii") if token else None

    def app(environ: dict, start_response: Callable) -> object:  # type: ignore[type-arg]
        if expected is not None:
            got = environ.get("HTTP_AUTHORIZATION", "").encode("latin-1")
            scheme, _, value = got.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(value.strip(), expected):
                start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")])
                return [b"missing or wrong bearer token\n"]
        return metrics_app(environ, start_response)

    class _Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    class _Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - no request lines in logs
            pass

    server = make_server(host.strip("[]"), port, app, server_class=_Server, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
