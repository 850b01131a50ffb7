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

# Routes as they appear in the `route` label (the path template, never the raw URL).
ROUTES = ("/recognize", "/api/predict/", "/api/v1/analyze", "/api/synthesize", "/ws/asr")
# Models as they appear in the `model` label.
MODELS = ("asr", "emotion", "tts")
# Reasons as they appear in the `reason` label of the rejected counter.
REJECT_REASONS = ("queue_full", "deadline", "too_large", "unauthorized", "draining", "bad_input")


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
    MetricSpec("asrtk_ready", "gauge", (),
               "1 when models are loaded and warmed and the server accepts work, else 0 (per worker, summed)."),
    MetricSpec("asrtk_model_info", "gauge", ("model", "preset", "provider"),
               "Always 1; labels say which model preset and ONNX Runtime provider run."),
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
