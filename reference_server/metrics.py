"""The server's Prometheus metrics: exactly ``metrics_spec.METRICS``, nothing else.

With several worker processes, prometheus_client's multiprocess mode is used (the
supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` before any worker imports the client):
counters and histograms add up across workers, gauges use ``livesum`` (``livemax``
for ``asrtk_model_info``, which is always 1) so dead workers drop out once the supervisor
marks them dead. ``asrtk_worker_restarts_total`` is written by the supervisor itself
(:func:`worker_restarts_counter`); every worker also creates it at 0, so a single worker
exposes it too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from reference_server import metrics_spec as spec

_BUCKETS = {
    "asrtk_request_duration_seconds": spec.LATENCY_BUCKETS_S,
    "asrtk_queue_wait_seconds": spec.LATENCY_BUCKETS_S,
    "asrtk_inference_duration_seconds": spec.LATENCY_BUCKETS_S,
    "asrtk_batch_size": spec.BATCH_SIZE_BUCKETS,
    "asrtk_cache_lookup_duration_seconds": spec.CACHE_LOOKUP_BUCKETS_S,
}
_GAUGE_MODE = {"asrtk_model_info": "livemax", "asrtk_cache_degraded": "livemax"}


def _resident_bytes() -> int | None:
    """This process's resident set size (Linux /proc; None elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def multiprocess_enabled() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class ServerMetrics:
    """Owns the metric objects; ``render()`` returns the /metrics payload and content type."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

        disable_created_metrics()  # *_created series are not in the contract
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess = multiprocess_enabled()
        self._m: dict[str, object] = {}
        for m in spec.METRICS:
            kw: dict[str, object] = {"registry": self.registry, "labelnames": m.labels}
            if m.kind == "counter":
                name = m.name.removesuffix("_total")
                self._m[m.name] = Counter(name, m.help, **kw)
            elif m.kind == "histogram":
                self._m[m.name] = Histogram(m.name, m.help, buckets=_BUCKETS[m.name], **kw)
            else:
                self._m[m.name] = Gauge(m.name, m.help, multiprocess_mode=_GAUGE_MODE.get(m.name, "livesum"), **kw)
        self.requests = self._m["asrtk_requests_total"]
        self.request_duration = self._m["asrtk_request_duration_seconds"]
        self.queue_wait = self._m["asrtk_queue_wait_seconds"]
        self.inference = self._m["asrtk_inference_duration_seconds"]
        self.batch_size = self._m["asrtk_batch_size"]
        self.queue_depth = self._m["asrtk_queue_depth"]
        self.queue_capacity = self._m["asrtk_queue_capacity"]
        self.inflight = self._m["asrtk_inflight_requests"]
        self.audio_seconds = self._m["asrtk_audio_seconds_total"]
        self.rejected = self._m["asrtk_rejected_requests_total"]
        self.ready = self._m["asrtk_ready"]
        self.process_cpu = self._m["asrtk_process_cpu_seconds_total"]
        self._cpu_seen = 0.0
        self.model_info = self._m["asrtk_model_info"]
        self.worker_restarts = self._m["asrtk_worker_restarts_total"]  # incremented by the supervisor only
        # Pre-create label sets so dashboards see zeros instead of missing series.
        for route in spec.ROUTES:
            self.inflight.labels(route=route).set(0)
            self.audio_seconds.labels(route=route)
            self.request_duration.labels(route=route)
        for model in spec.MODELS:
            self.queue_depth.labels(model=model).set(0)
        self.ready.set(0)
        self.cache_degraded = self._m["asrtk_cache_degraded"]
        self.cache_degraded.set(0)
        self._m["asrtk_cache_memory_bytes"].set(0)

    def precreate_cache(self, levels: Sequence[str]) -> None:
        """With --cache: zeros for every cache series, so dashboards show 0 rather than no data."""
        for model in spec.MODELS:
            for result in ("hit", "miss"):
                self._m["asrtk_cache_requests_total"].labels(model=model, result=result)
            for level in levels:
                for result in spec.CACHE_RESULTS:
                    self._m["asrtk_cache_lookups_total"].labels(model=model, level=level, result=result)
        for level in levels:
            self._m["asrtk_cache_lookup_duration_seconds"].labels(level=level)
        self._m["asrtk_cache_evictions_total"].labels(level="memory")
        for op in ("get", "set"):
            self._m["asrtk_cache_errors_total"].labels(level="redis", op=op)

    # CacheMetrics (reference_server.cache)
    def request(self, model: str, hit: bool) -> None:
        self._m["asrtk_cache_requests_total"].labels(model=model, result="hit" if hit else "miss").inc()

    def lookup(self, model: str, level: str, result: str, seconds: float) -> None:
        self._m["asrtk_cache_lookups_total"].labels(model=model, level=level, result=result).inc()
        self._m["asrtk_cache_lookup_duration_seconds"].labels(level=level).observe(seconds)

    def eviction(self, level: str) -> None:
        self._m["asrtk_cache_evictions_total"].labels(level=level).inc()

    def error(self, level: str, op: str) -> None:
        self._m["asrtk_cache_errors_total"].labels(level=level, op=op).inc()

    def degraded(self, on: bool) -> None:
        self.cache_degraded.set(1 if on else 0)

    def memory_bytes(self, n: int) -> None:
        self._m["asrtk_cache_memory_bytes"].set(n)

    def update_cpu(self) -> None:
        """Add this process's CPU since the last call and set its resident memory (called every
        second and before a scrape)."""
        import time

        now = time.process_time()
        if now > self._cpu_seen:
            self.process_cpu.inc(now - self._cpu_seen)
            self._cpu_seen = now
        rss = _resident_bytes()
        if rss is not None:
            self._m["asrtk_process_resident_memory_bytes"].set(rss)

    # BatchObserver
    def on_depth(self, model: str, depth: int) -> None:
        self.queue_depth.labels(model=model).set(depth)

    def on_batch(self, model: str, size: int, queue_waits_s: Sequence[float], infer_s: float) -> None:
        self.batch_size.labels(model=model).observe(size)
        self.inference.labels(model=model).observe(infer_s)
        wait = self.queue_wait.labels(model=model)
        for w in queue_waits_s:
            wait.observe(max(0.0, w))

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    """Drop a dead worker's live gauges (``asrtk_ready``, in-flight, queue depth) from the sums."""
    if multiprocess_enabled():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def worker_restarts_counter(prom_dir: str):  # noqa: ANN201 - prometheus_client.Counter, imported late on purpose
    """``asrtk_worker_restarts_total`` for the supervisor: a counter file of its own pid in ``prom_dir``.

    Sets ``PROMETHEUS_MULTIPROC_DIR`` in this process's environment. prometheus_client picks
    single- or multi-process values when it is first imported, so this must run before
    anything in the supervisor imports it (nothing does before :func:`reference_server.run.supervise`).
    """
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = prom_dir
    from prometheus_client import CollectorRegistry, Counter, values

    if not getattr(values.ValueClass, "_multiprocess", False):
        raise RuntimeError("prometheus_client was imported before PROMETHEUS_MULTIPROC_DIR was set: "
                           "the supervisor's asrtk_worker_restarts_total would not reach the workers' /metrics")
    m = next(m for m in spec.METRICS if m.name == "asrtk_worker_restarts_total")
    return Counter(m.name.removesuffix("_total"), m.help, registry=CollectorRegistry())
