"""The reference server's Prometheus metrics: names, types, labels, buckets.

This is a contract. The server registers exactly these (``reference_server.metrics``),
and the generators (alerts, recording rules, dashboards) may use only these names; a
contract test checks both against a live server's ``/metrics``. Base units, unit
suffixes, few low-cardinality labels.

Latency buckets reach 900 s: ``histogram_quantile`` cannot see past the top finite
bucket, and a 10-minute call-centre recording can legitimately take minutes. Every
SLO threshold asrtk generates rules for must be one of these boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass

LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.75, 0.8, 1.0,
    1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0,
    180.0, 300.0, 600.0, 900.0,
)
BATCH_SIZE_BUCKETS: tuple[float, ...] = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
# result-cache lookups: microseconds in process, up to the Redis deadline (0.2 s) and past it
CACHE_LOOKUP_BUCKETS_S: tuple[float, ...] = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0,
)

# Routes as they appear in the `route` label (the path template, never the raw URL).
ROUTES = ("/recognize", "/api/predict/", "/api/v1/analyze", "/api/synthesize", "/ws/asr")
# Models as they appear in the `model` label.
MODELS = ("asr", "emotion", "tts")
# Reasons as they appear in the `reason` label of the rejected counter.
REJECT_REASONS = ("queue_full", "deadline", "too_large", "unauthorized", "draining", "bad_input")
# Result-cache levels and lookup results (`--cache`; docs/server.md "Result cache").
CACHE_LEVELS = ("memory", "redis")
CACHE_RESULTS = ("hit", "miss", "error")


@dataclass(frozen=True)
class MetricSpec:
    name: str  # as exposed (counters carry _total)
    kind: str  # counter | histogram | gauge
    labels: tuple[str, ...]
    help: str


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("asrtk_requests_total", "counter", ("route", "status"),
               "Requests finished, by route template and HTTP status code (101 for a completed WebSocket session)."),
    MetricSpec("asrtk_request_duration_seconds", "histogram", ("route",),
               "Wall time from request arrival to response, seconds (WebSocket: session length)."),
    MetricSpec("asrtk_queue_wait_seconds", "histogram", ("model",),
               "Time an item waited in the batching queue before its batch started, seconds."),
    MetricSpec("asrtk_inference_duration_seconds", "histogram", ("model",),
               "ONNX Runtime time per batch, seconds."),
    MetricSpec("asrtk_batch_size", "histogram", ("model",),
               "Items per executed batch (a long recording is split into several items)."),
    MetricSpec("asrtk_queue_depth", "gauge", ("model",),
               "Items waiting in the batching queue now (summed over worker processes)."),
    MetricSpec("asrtk_queue_capacity", "gauge", ("model",),
               "Bound of the batching queue (--max-queue), summed over worker processes."),
    MetricSpec("asrtk_inflight_requests", "gauge", ("route",),
               "Requests being handled now (summed over worker processes)."),
    MetricSpec("asrtk_audio_seconds_total", "counter", ("route",),
               "Seconds of input audio processed (ASR and emotion) or synthesised (TTS)."),
    MetricSpec("asrtk_rejected_requests_total", "counter", ("route", "reason"),
               "Requests refused before or instead of inference, by reason."),
    MetricSpec("asrtk_process_cpu_seconds_total", "counter", (),
               "CPU time (user + system) of the worker processes, all threads (ONNX Runtime's included), seconds; "
               "divided by asrtk_requests_total it is the CPU cost of a request."),
    MetricSpec("asrtk_process_resident_memory_bytes", "gauge", (),
               "Resident memory of the worker processes, summed, bytes (updated every second and on each scrape); "
               "its peak under load sizes a pod's memory."),
    MetricSpec("asrtk_ready", "gauge", (),
               "1 when models are loaded and warmed and the server accepts work, else 0 (per worker, summed)."),
    MetricSpec("asrtk_model_info", "gauge", ("model", "preset", "provider"),
               "Always 1; labels say which model preset and ONNX Runtime provider run."),
    MetricSpec("asrtk_cache_requests_total", "counter", ("model", "result"),
               "Requests that looked up the result cache, by result (hit: any level had the answer, X-Cache: hit; "
               "miss: the model computed it). The hit rate is hit / (hit + miss)."),
    MetricSpec("asrtk_cache_lookups_total", "counter", ("model", "level", "result"),
               "Result-cache lookups by model, level (memory, redis) and result (hit, miss, error: Redis down or "
               "slow, counted as a miss). A request is a hit when any level hits."),
    MetricSpec("asrtk_cache_lookup_duration_seconds", "histogram", ("level",),
               "Time of one result-cache lookup, seconds (Redis: bounded by its 0.2 s deadline)."),
    MetricSpec("asrtk_cache_evictions_total", "counter", ("level",),
               "Entries evicted from the in-process cache to stay within its size (--cache memory:SIZE)."),
    MetricSpec("asrtk_cache_errors_total", "counter", ("level", "op"),
               "Failed cache operations (op get or set); the request is served without the cache."),
    MetricSpec("asrtk_cache_degraded", "gauge", (),
               "1 while Redis is failing and the cache runs without it (lookups are misses), else 0."),
    MetricSpec("asrtk_cache_memory_bytes", "gauge", (),
               "Bytes of values held by the in-process cache (summed over worker processes)."),
    MetricSpec("asrtk_worker_restarts_total", "counter", (),
               "Worker processes the supervisor restarted after they died (--workers N > 1; always 0 with one worker)."),
)


def exposed_series_names() -> set[str]:
    """Every sample name the server exposes (histograms add _bucket/_sum/_count)."""
    names: set[str] = set()
    for m in METRICS:
        if m.kind == "histogram":
            names.update({m.name + "_bucket", m.name + "_sum", m.name + "_count"})
        else:
            names.add(m.name)
    return names
