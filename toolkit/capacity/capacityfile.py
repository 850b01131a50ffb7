"""``capacity.json`` (schema ``asrtk.capacity/v1``): what a sweep measured, documented in docs/capacity.md.

Pure transformations (result summaries in, dicts out) plus a small reader/writer.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from toolkit import atomic
from toolkit.capacity.sweep import Judgement, StepPlan, StepResult, SweepOutcome, SweepPolicy
from toolkit.capacity.usl import UslFit
from toolkit.errors import ConfigError

SCHEMA = "asrtk.capacity/v1"
REQUIRED_KEYS = ("schema", "created", "mode", "slo", "steps", "result")
STEP_KEYS = ("index", "load", "offered_rps", "achieved_rps", "concurrency", "requests", "error_rate", "latency_s")

_QUANTILE_KEYS = {0.5: "p50", 0.9: "p90", 0.95: "p95", 0.99: "p99", 0.999: "p999"}


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def step_result_from_summary(summary: dict, load: float, mode: str) -> StepResult:
    """What the peak search needs from one ``asrtk.result/v1`` summary."""
    lat = summary.get("latency_s") or {}
    quantiles = {q: _num(lat.get(k)) for q, k in _QUANTILE_KEYS.items()}
    latency = {q: v for q, v in quantiles.items() if v is not None}
    req = summary.get("requests") or {}
    total = int(req.get("total") or 0)
    ok = int(req.get("ok") or 0)
    error_rate = _num(req.get("error_rate"))
    if error_rate is None:
        error_rate = (total - ok) / total if total else 1.0
    achieved = _num((summary.get("throughput") or {}).get("rps")) or 0.0
    duration = _num(summary.get("duration_s")) or 0.0
    mean = _num(lat.get("mean"))
    concurrency = float(load) if mode == "users" else (achieved * mean if mean is not None else None)
    offered = _num((summary.get("load") or {}).get("offered_rps")) if mode == "rate" else None
    return StepResult(
        load=float(load), achieved_rps=achieved, requests=ok, error_rate=error_rate,
        duration_s=duration, latency_s=latency or {0.95: math.inf}, concurrency=concurrency,
        offered_rps=offered, disturbed=bool((summary.get("host") or {}).get("disturbed")),
        interference_cores=_num((summary.get("host") or {}).get("interference_cpu_cores_mean")),
    )


def cpu_per_request(summary: dict) -> tuple[float | None, str | None]:
    """What a request cost the target in CPU seconds, and how it was measured: from the server's
    own CPU counter (``metrics``, any target that exports one) or from its processes on the load
    host (``local``)."""
    v = _num((summary.get("server") or {}).get("cpu_s_per_request"))
    if v is not None and v > 0:
        return v, "metrics"
    v = _num((summary.get("host") or {}).get("target_cpu_s_per_request"))
    if v is not None and v > 0:
        return v, "local"
    return None, None


def step_record(
    plan: StepPlan,
    result: StepResult,
    judgement: Judgement,
    final: str,
    summary: dict,
    mode: str,
    run_dir: str | None,
) -> dict:
    lat = summary.get("latency_s") or {}
    gpu = summary.get("gpu") or {}
    devices = gpu.get("devices") or []
    gpu_rec = None
    if gpu.get("available") and devices:
        utils = [_num(d.get("util_mean_ratio")) for d in devices]
        mems = [_num(d.get("memory_used_max_bytes")) for d in devices]
        gpu_rec = {
            "util_mean_ratio": max((u for u in utils if u is not None), default=None),
            "memory_used_max_bytes": sum(m for m in mems if m is not None),
            "devices": len(devices),
        }
    srv = summary.get("server") or None
    server_rec = None
    if srv:
        server_rec = {k: srv.get(k) for k in (
            "queue_depth_max", "batch_size_mean", "queue_wait_s_mean", "inference_s_mean", "rejected_total",
            "memory_max_bytes")}
    loadgen = summary.get("loadgen") or {}
    host = summary.get("host") or {}
    cpu, cpu_source = cpu_per_request(summary)
    return {
        "index": plan.index,
        "phase": plan.phase,
        "verdict": judgement.verdict,
        "final": final,
        "reason": judgement.reason,
        "load": plan.load,
        "offered_rps": _num((summary.get("load") or {}).get("offered_rps")),
        "users": int(plan.load) if mode == "users" else None,
        "achieved_rps": result.achieved_rps,
        "concurrency": result.concurrency,
        "requests": result.requests,
        "duration_s": result.duration_s,
        "error_rate": result.error_rate,
        "latency_s": {k: _num(lat.get(k)) for k in ("mean", "p50", "p90", "p95", "p99", "max")},
        "latency_at_slo_s": judgement.latency_s if math.isfinite(judgement.latency_s) else None,
        "latency_ci_s": [v if math.isfinite(v) else None for v in judgement.latency_ci_s],
        "gpu": gpu_rec,
        "server": server_rec,
        "loadgen_valid": loadgen.get("valid"),
        "cpu_s_per_request": cpu,
        "cpu_source": cpu_source,
        # CPU the target spent per request (a local target) and other work on the load host
        "host": {"target_cpu_s_per_request": _num(host.get("target_cpu_s_per_request")),
                 "interference_cpu_cores": _num(host.get("interference_cpu_cores_mean")),
                 "disturbed": bool(host.get("disturbed"))},
        "run_dir": run_dir,
    }


def result_record(outcome: SweepOutcome, steps: list[dict]) -> dict:
    best = steps[outcome.best_index] if outcome.best_index is not None else None
    at_best = None
    if best is not None:
        at_best = {
            "p50_s": best["latency_s"].get("p50"),
            "p95_s": best["latency_s"].get("p95"),
            "p99_s": best["latency_s"].get("p99"),
            "error_rate": best["error_rate"],
            "concurrency": best["concurrency"],
            "load": best["load"],
        }
    return {
        "status": outcome.status,
        "max_rps_at_slo": outcome.max_rps_at_slo,
        "ci_rps": list(outcome.ci_rps),
        "ci_level": 0.95,
        "best_step": outcome.best_index,
        "knee_load": list(outcome.knee_load),
        "at_best": at_best,
        "note": outcome.note,
    }


def policy_record(policy: SweepPolicy) -> dict:
    return {
        "start": policy.start,
        "growth": policy.growth,
        "tolerance": policy.tolerance,
        "step_duration_s": policy.step_duration_s,
        "max_step_duration_s": policy.step_cap_s,
        "max_steps": policy.max_steps,
        "tail_requests": policy.tail_requests,
        "max_load": policy.max_load,
        "fill": list(policy.fill),
    }


def usl_points(steps: list[dict]) -> tuple[list[float], list[float]]:
    """(concurrency, throughput) of the steps that count (repeats replace their noisy first run)."""
    n: list[float] = []
    x: list[float] = []
    for s in steps:
        if s.get("final") in ("noisy", "disturbed") or s.get("concurrency") is None:
            continue
        if s.get("error_rate", 0) and s["error_rate"] > 0.5:
            continue
        n.append(float(s["concurrency"]))
        x.append(float(s["achieved_rps"]))
    return n, x


def service_time_from_steps(steps: list[dict], cv2: float | None = None, source: str | None = None) -> dict | None:
    """Service time ~ latency at the lightest passing load (no queueing there)."""
    from toolkit.capacity.queueing import gamma_cv2_from_ratio

    candidates = [s for s in steps if s.get("final") == "pass" and s["latency_s"].get("mean")]
    if not candidates:
        return None
    light = min(candidates, key=lambda s: s["achieved_rps"])
    mean = float(light["latency_s"]["mean"])
    if cv2 is None:
        p95 = light["latency_s"].get("p95")
        cv2 = gamma_cv2_from_ratio(float(p95) / mean) if p95 else 1.0
        source = f"gamma fit of p95/mean at step {light['index']}"
    return {"mean": mean, "cv2": float(cv2), "source": source or f"step {light['index']}", "step": light["index"]}


def build_capacity(
    *,
    created: str,
    asrtk_version: str,
    sweep_id: str,
    scenario: dict,
    target: dict,
    policy: SweepPolicy,
    steps: list[dict],
    outcome: SweepOutcome,
    usl: UslFit | None,
    usl_error: str | None,
    service_time: dict | None,
    request: dict | None,
    wall_s: float | None = None,
) -> dict:
    return {
        "schema": SCHEMA,
        "created": created,
        "asrtk_version": asrtk_version,
        "sweep_id": sweep_id,
        "scenario": scenario,
        "target": target,
        "mode": policy.mode,
        "slo": {
            "percentile": policy.slo_percentile,
            "latency_s": policy.slo_latency_s,
            "max_error_rate": policy.max_error_rate,
        },
        "search": policy_record(policy),
        "steps": steps,
        "result": result_record(outcome, steps),
        "usl": usl.to_dict() if usl is not None else None,
        "usl_error": usl_error,
        "service_time_s": service_time,
        "request": request,
        "workers": None,
        "best_workers": None,
        "wall_s": wall_s,
    }


def validate_capacity(d: Any) -> list[str]:
    """Problems with a capacity document, empty when it is valid."""
    if not isinstance(d, dict):
        return ["not a JSON object"]
    problems = [f"missing key '{k}'" for k in REQUIRED_KEYS if k not in d]
    if d.get("schema") not in (None, SCHEMA) and "schema" in d:
        problems.append(f"schema is {d.get('schema')!r}, expected {SCHEMA!r}")
    if d.get("mode") not in ("rate", "users", None):
        problems.append(f"mode must be 'rate' or 'users', got {d.get('mode')!r}")
    slo = d.get("slo")
    if isinstance(slo, dict):
        for k in ("percentile", "latency_s"):
            if _num(slo.get(k)) is None:
                problems.append(f"slo.{k} must be a number")
    elif "slo" in d:
        problems.append("slo must be an object")
    steps = d.get("steps")
    if isinstance(steps, list):
        for i, s in enumerate(steps):
            if not isinstance(s, dict):
                problems.append(f"steps[{i}] must be an object")
                continue
            problems += [f"steps[{i}] missing key '{k}'" for k in STEP_KEYS if k not in s]
    elif "steps" in d:
        problems.append("steps must be a list")
    return problems


def write_capacity(path: Path, doc: dict) -> Path:
    return atomic.write_text(Path(path), json.dumps(doc, indent=2, allow_nan=False) + "\n")


def read_capacity(path: Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / "capacity.json"
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"capacity file {path} not found: run `asrtk sweep --scenario NAME` first") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"capacity file {path} is not valid JSON ({exc}); re-run `asrtk sweep`") from exc
    problems = validate_capacity(doc)
    if problems:
        raise ConfigError(f"capacity file {path}: {problems[0]} (schema {SCHEMA}, see docs/capacity.md)")
    return doc


def find_latest_sweep(results_dir: Path) -> Path | None:
    """Newest ``results/sweep-*/capacity.json`` by its ``created`` field (then by name)."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        return None
    found: list[tuple[str, str, Path]] = []
    for p in results_dir.glob("sweep-*/capacity.json"):
        try:
            created = str(json.loads(p.read_text()).get("created", ""))
        except (OSError, json.JSONDecodeError):
            continue
        found.append((created, p.parent.name, p))
    if not found:
        return None
    return max(found)[2]
