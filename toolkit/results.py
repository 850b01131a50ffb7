"""The results store: one directory per run, files with fixed names and documented columns.

``<out>/<run-id>/`` with run-id ``YYYYmmdd-HHMMSS-<scenario>[-N]`` holds ``summary.json``
(schema ``asrtk.result/v1``, see ``docs/results.md``), ``timeseries.csv`` (per second),
``latency.hlog`` (HdrHistogram interval log, microseconds), ``telemetry.csv`` (1 Hz host and
GPU), ``server_metrics.csv`` (scraped target metrics), ``report.html`` and ``report.md``.
"""

from __future__ import annotations

import csv
import json
import math
import re
import zlib
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from toolkit import atomic
from toolkit.errors import ConfigError, NoDataError

SCHEMA = "asrtk.result/v1"
STANDARD_PERCENTILES = (50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99)

FILES = {
    "summary": "summary.json",
    "timeseries": "timeseries.csv",
    "latency_log": "latency.hlog",
    "telemetry": "telemetry.csv",
    "server_metrics": "server_metrics.csv",
    "report_html": "report.html",
    "report_md": "report.md",
}

TIMESERIES_COLUMNS = [
    "t_s", "phase", "offered_rps", "achieved_rps", "ok", "errors", "inflight",
    "p50_s", "p95_s", "p99_s", "max_s", "rtf_p50", "schedule_lag_p99_s", "bytes_sent", "bytes_received",
    "cache_hit_ratio",
]
TELEMETRY_BASE_COLUMNS = ["t_s", "cpu_percent", "cpu_max_core_percent", "mem_used_bytes", "loadgen_cpu_percent",
                          "target_cpu_cores", "other_cpu_cores", "steal_cpu_cores"]
TELEMETRY_GPU_FIELDS = ["util_ratio", "mem_used_bytes", "mem_total_bytes", "power_watts", "sm_clock_hz",
                        "temp_celsius"]
# Long format: one row per scraped sample. ``url`` is the scraped /metrics URL, ``metric`` the sample
# name, ``labels`` its ``k=v`` pairs joined by ``,``.
SERVER_METRICS_COLUMNS = ["t_s", "url", "metric", "labels", "value"]  # the samplers' rows carry these keys


def telemetry_columns(gpu_count: int) -> list[str]:
    """Columns of telemetry.csv for ``gpu_count`` GPUs (``gpu<i>_<field>`` after the host columns)."""
    return TELEMETRY_BASE_COLUMNS + [f"gpu{i}_{f}" for i in range(gpu_count) for f in TELEMETRY_GPU_FIELDS]


TELEMETRY_COLUMNS = TELEMETRY_BASE_COLUMNS + [f"gpu<i>_{f}" for f in TELEMETRY_GPU_FIELDS]

# Dotted keys every summary.json must carry (null is allowed where documented, absence is not).
REQUIRED_KEYS = (
    "schema", "run_id", "asrtk_version", "created", "complete", "incomplete_reason",
    "scenario", "scenario.name", "scenario.source", "scenario.protocol", "scenario.seed",
    "target", "target.url", "target.embedded", "target.server",
    "load", "load.mode", "load.offered_rps", "load.achieved_rps", "load.users", "load.processes", "load.stages",
    "duration_s", "warmup_s",
    "requests", "requests.total", "requests.ok", "requests.errors", "requests.error_rate", "requests.late_starts",
    "requests.by_class",
    "throughput", "throughput.rps", "throughput.audio_s_per_s", "throughput.bytes_sent_per_s",
    "throughput.bytes_received_per_s",
    "latency_s", "latency_s.count", "latency_s.min", "latency_s.mean", "latency_s.p50", "latency_s.p90",
    "latency_s.p95", "latency_s.p99", "latency_s.p999", "latency_s.max",
    "rtf", "stream",
    "slo", "slo.passed", "slo.checks",
    "loadgen", "loadgen.valid", "loadgen.warnings", "loadgen.processes", "loadgen.cpu_max_percent",
    "loadgen.schedule_lag_p50_s", "loadgen.schedule_lag_p99_s", "loadgen.schedule_lag_max_s",
    "gpu", "gpu.available", "gpu.reason", "gpu.devices",
    "host", "host.cores", "host.cpu_mean_percent", "host.cpu_max_percent", "host.memory_used_max_bytes",
    "host.target_cpu_cores_mean", "host.target_cpu_s_per_request", "host.other_cpu_cores_mean", "host.steal_cpu_cores_mean",
    "host.interference_cpu_cores_mean", "host.disturbed",
    "server", "files",
)


# ----------------------------------------------------------------------------- run directories


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "run"


def new_run_dir(out: Path, scenario: str, now: datetime) -> Path:
    """Create and return ``out/YYYYmmdd-HHMMSS-<scenario>``, adding ``-2``, ``-3``... when taken."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = f"{now.strftime('%Y%m%d-%H%M%S')}-{_slug(scenario)}"
    for n in range(1, 10_000):
        candidate = out / (base if n == 1 else f"{base}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise ConfigError(f"cannot create a run directory under {str(out)!r}: too many runs named {base!r}")


# ----------------------------------------------------------------------------- JSON


def _finite_json(obj: Any) -> Any:
    """NaN and infinities are not JSON: they become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_json(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON so that readers never see a half-written file."""
    text = json.dumps(_finite_json(obj), indent=2, allow_nan=False) + "\n"
    atomic.write_text(Path(path), text, fsync=True)


def read_summary(run_dir: Path) -> dict[str, Any]:
    """The summary of a run (``run_dir`` may also be the summary.json itself)."""
    run_dir = Path(run_dir)
    path = run_dir if run_dir.is_file() else run_dir / FILES["summary"]
    if not path.is_file():
        raise NoDataError(f"no {FILES['summary']} in {str(path.parent)!r}; give a run directory written by "
                          f"`asrtk bench` (see `asrtk results list`)")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{str(path)!r} is not valid JSON ({exc}); the run may have been cut off") from exc
    if not isinstance(d, dict) or d.get("schema") != SCHEMA:
        got = d.get("schema") if isinstance(d, dict) else type(d).__name__
        raise ConfigError(f"{str(path)!r} has schema {got!r}, expected {SCHEMA!r}")
    return d


def _get(d: Any, dotted: str) -> tuple[bool, Any]:
    cur = d
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return False, None
        cur = cur[part]
    return True, cur


def validate_summary(d: Mapping[str, Any]) -> list[str]:
    """Problems with a summary: each missing required key (dotted), and a wrong schema."""
    problems = []
    for key in REQUIRED_KEYS:
        present, _ = _get(d, key)
        if not present:
            # A key under a null parent (e.g. server: null) is not missing; under a missing
            # parent it is already reported with the parent.
            parent = key.rsplit(".", 1)[0] if "." in key else None
            if parent is not None:
                ok, value = _get(d, parent)
                if not ok or value is None:
                    continue
            problems.append(f"missing key {key}")
    if d.get("schema") not in (None, SCHEMA) and _get(d, "schema")[0]:
        problems.append(f"schema is {d.get('schema')!r}, expected {SCHEMA!r}")
    return problems


def run_valid(s: Mapping[str, Any]) -> bool | None:
    """Can the run's figures be used? Not when the load generator was the bottleneck
    (``loadgen.valid`` false) or when no request succeeded (nothing was measured)."""
    valid = _get(s, "loadgen.valid")[1]
    ok = _get(s, "requests.ok")[1]
    if ok is not None and int(ok) == 0:
        return False
    return valid


def list_runs(out: Path) -> list[dict[str, Any]]:
    """Runs under ``out``, newest first: run_id, scenario, created, complete, valid, rps, p95_s,
    slo_passed, path. Directories without a readable v1 summary are skipped."""
    out = Path(out)
    if not out.is_dir():
        return []
    runs = []
    for d in out.iterdir():
        if not d.is_dir() or not (d / FILES["summary"]).is_file():
            continue
        try:
            s = read_summary(d)
        except ConfigError:
            continue
        runs.append({
            "run_id": s.get("run_id") or d.name,
            "scenario": _get(s, "scenario.name")[1],
            "created": s.get("created"),
            "complete": bool(s.get("complete")),
            "valid": run_valid(s),
            "rps": _get(s, "throughput.rps")[1],
            "p95": _get(s, "latency_s.p95")[1],
            "error_rate": _get(s, "requests.error_rate")[1],
            "slo_passed": _get(s, "slo.passed")[1],
            "path": d,
        })
    runs.sort(key=lambda r: (str(r["created"] or ""), str(r["run_id"])), reverse=True)
    return runs


# ----------------------------------------------------------------------------- CSV


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Write rows (dicts) under a header, atomically; missing values and NaN are empty cells."""
    import io

    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(columns)
    for row in rows:
        w.writerow([_cell(row.get(c)) for c in columns])
    atomic.write_text(Path(path), buf.getvalue())


def _cell(v: Any) -> Any:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if isinstance(v, float):
        return repr(round(v, 9))
    return v


def read_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of a results CSV as dicts; numbers become int/float, empty cells None. Missing file: []."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: _parse(v) for k, v in row.items() if k is not None} for row in csv.DictReader(f)]


def _parse(v: str | None) -> Any:
    if v is None or v == "":
        return None
    try:
        return int(v)
    except ValueError:
        pass
    try:
        return float(v)
    except ValueError:
        return v


# ----------------------------------------------------------------------------- latency log


def read_latency_histogram(hlog_path: Path, warmup_s: float = 0.0) -> Any:
    """The measured window's latencies (µs HdrHistogram) from a run's latency.hlog: intervals that
    start before ``warmup_s`` (relative to the run start) are skipped. None when the log is
    missing, damaged or holds no values."""
    from hdrh.histogram import HdrHistogram
    from hdrh.log import HistogramLogReader

    hlog_path = Path(hlog_path)
    if not hlog_path.is_file():
        return None
    total = HdrHistogram(1, 3_600_000_000, 3)
    reader = HistogramLogReader(str(hlog_path), HdrHistogram(1, 3_600_000_000, 3))
    try:
        for _ in range(1_000_000):  # bounded: a day of 1 s intervals is 86,400
            h = reader.get_next_interval_histogram()
            if h is None:
                break
            start_s = h.get_start_time_stamp() / 1000.0 - reader.base_time_sec
            if start_s + 1e-6 >= warmup_s:
                total.add(h)
    except (ValueError, TypeError, OSError, zlib.error):  # a damaged log
        return None
    finally:
        reader.input_file.close()
    return total if total.get_total_count() else None


def latency_spectrum(hlog_path: Path, warmup_s: float = 0.0,
                     points: int = 64) -> list[tuple[float, float]] | None:
    """Percentile spectrum (percentile 0-100, latency seconds) of the measured intervals of a latency.hlog.

    Intervals that start before ``warmup_s`` (timestamps relative to the run start) are skipped.
    None when the log is missing or holds no values.
    """
    total = read_latency_histogram(hlog_path, warmup_s)
    if total is None:
        return None
    # Log spacing in 1/(1-p), dense in the tail where decisions are made, plus the usual percentiles.
    grid = {round(100.0 * (1.0 - 10.0 ** (-4.0 * i / (points - 1))), 6) for i in range(points)}
    grid.update(STANDARD_PERCENTILES)
    grid.discard(100.0)
    out = [(p, total.get_value_at_percentile(p) / 1e6) for p in sorted(grid)]
    out.append((100.0, total.get_max_value() / 1e6))
    return out


# ----------------------------------------------------------------------------- building summary.json
# Pure: measurements in, the asrtk.result/v1 document out. The orchestrator (toolkit.runs.bench)
# gathers the measurements; nothing here reads a clock, the network or a file.


def _pct(h: Any, p: float) -> float | None:
    from toolkit.recorder import percentiles_s

    return percentiles_s(h, [p * 100.0])[p * 100.0]


def slo_checks(scenario: Any, merged: Any, error_rate: float) -> dict[str, Any]:
    """The SLO verdict of a run from its merged totals."""
    slo = scenario.slo
    p = slo.percentile
    label = f"p{p * 100:g}"
    stream = scenario.protocol.kind == "stream" and not scenario.mix
    checks = []
    if not (stream and slo.final_latency_s is not None):
        lat = _pct(merged.hist["lat"], p)  # stream: the final result's latency after end of audio
        checks.append({"name": f"latency_{label}_s" if not stream else f"final_latency_{label}_s",
                       "threshold": slo.latency_s, "measured": lat,
                       "passed": lat is not None and lat <= slo.latency_s})
    if slo.rtf_max is not None:
        rtf = _pct(merged.hist["rtf"], p)
        checks.append({"name": f"rtf_{label}", "threshold": slo.rtf_max, "measured": rtf,
                       "passed": rtf is not None and rtf <= slo.rtf_max})
    if slo.partial_latency_s is not None:
        v = _pct(merged.hist["partial"], 0.95)
        checks.append({"name": "partial_latency_p95_s", "threshold": slo.partial_latency_s, "measured": v,
                       "passed": v is not None and v <= slo.partial_latency_s})
    if slo.final_latency_s is not None:
        v = _pct(merged.hist["final"], 0.95)
        checks.append({"name": "final_latency_p95_s", "threshold": slo.final_latency_s, "measured": v,
                       "passed": v is not None and v <= slo.final_latency_s})
    checks.append({"name": "error_rate", "threshold": slo.max_error_rate, "measured": error_rate,
                   "passed": merged.total > 0 and error_rate <= slo.max_error_rate})
    return {"passed": all(c["passed"] for c in checks), "checks": checks}


def loadgen_verdict(cpu_mean_percent: float | None, lag_p99_s: float | None, late_starts: int,
                    thresholds: Any) -> tuple[bool, list[str]]:
    """Whether the load generator kept its schedule (valid) and the warnings that say why not."""
    valid, warnings = True, []
    if cpu_mean_percent is not None and cpu_mean_percent > thresholds.loadgen_cpu_percent:
        valid = False
        warnings.append(f"load generator saturated: its busiest process averaged {cpu_mean_percent:.0f}% of a core "
                        f"(> {thresholds.loadgen_cpu_percent:.0f}%); rerun with more load-generator processes "
                        f"(--processes N) or on another machine")
    if lag_p99_s is not None and lag_p99_s > thresholds.schedule_lag_p99_s:
        valid = False
        warnings.append(f"load generator fell behind its schedule: lag p99 {lag_p99_s * 1000:.1f} ms "
                        f"(> {thresholds.schedule_lag_p99_s * 1000:.0f} ms), {late_starts} late starts; rerun with "
                        f"--processes N (one per core) or a lower --rate")
    return valid, warnings


def host_warnings(host: Mapping[str, Any]) -> list[str]:
    """Warnings about other work on the load host and CPU contention (from a host summary)."""
    out = []
    if host.get("disturbed"):
        out.append(
            f"this host was busy with other work: {host['interference_cpu_cores_mean']:.2f} CPU cores on average "
            f"(other processes {host.get('other_cpu_cores_mean') or 0:.2f}, CPU steal by the hypervisor "
            f"{host.get('steal_cpu_cores_mean') or 0:.2f}; threshold {host['interference_threshold_cores']:g}); "
            "latency may be inflated and will not repeat: rerun on a quiet machine")
    cpu = host.get("cpu_mean_percent")
    if cpu is not None and cpu > 90:
        out.append(f"host CPU averaged {cpu:.0f}%: the load generator and the target "
                   f"compete for it; use --target on another machine for figures you will sign")
    return out


def _per_request(cores: float | None, duration_s: float | None, done_ok: int) -> float | None:
    return (cores * duration_s / done_ok) if (cores is not None and duration_s and done_ok) else None


def expected_cache(models: Sequence[Mapping[str, Any]], requests: int, before: int) -> dict[str, Any] | None:
    """The hit ratio a cache should reach on this run's traffic (``toolkit.capacity.cache``), or None
    when no request set has a repeat model.

    ``models``: one popularity model per request set (``RequestSet.popularity()`` plus its
    ``share`` of all requests: its mix weight over the sum of the weights; sets left out, such as
    streams, simply have no entry); sets without a repeat model are uniform over their distinct
    requests. ``requests``: arrivals in the measured window, ``before``: arrivals before it (the
    warm-up), split between the sets by share. A model with ``cache_entries`` is an LRU cache of that many items (Che), one
    without a cache that keeps everything for the run; both empty at the start of the run."""
    from toolkit.capacity.cache import lru_hit_ratio, lru_hit_ratio_run, popularity, repeat_ratio

    if not any(m.get("repeat") for m in models):
        return None
    out_models = []
    for m in models:
        share = float(m.get("share", 1.0))
        p = popularity(int(m["catalog"]), str(m["distribution"]), float(m.get("s") or 0.0))
        n, b = int(round(requests * share)), int(round(before * share))
        entries = m.get("cache_entries")
        out_models.append({"scenario": m.get("scenario"), "repeat": bool(m.get("repeat")),
                           "distribution": m["distribution"], "s": m.get("s"), "catalog": int(m["catalog"]),
                           "cache_entries": entries, "share": share,
                           "hit_ratio": lru_hit_ratio_run(p, int(entries), n, b) if entries else repeat_ratio(p, n, b),
                           "steady_hit_ratio": lru_hit_ratio(p, int(entries)) if entries else None})

    def weighted(key: str, every: bool) -> float | None:
        got = [(x["share"], x[key]) for x in out_models if x[key] is not None]
        if not got or (every and len(got) < len(out_models)):
            return None
        return sum(w * v for w, v in got) / sum(w for w, _v in got)

    covered = min(1.0, sum(x["share"] for x in out_models))
    return {"hit_ratio": weighted("hit_ratio", False), "steady_hit_ratio": weighted("steady_hit_ratio", True),
            "requests": int(round(requests * covered)), "requests_before": int(round(before * covered)),
            "models": out_models}


def cache_summary(totals: Any, server: Mapping[str, Any] | None,
                  expected: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The ``cache`` block: what the client saw (X-Cache on successful responses in the window, and
    their latency split by hit and miss), the target's own counters (``server``, from
    ``samplers.cache_server_summary``) and the ``expected`` hit ratio. None when the target showed
    no cache: no response carried the header and no cache counter was scraped."""
    from toolkit.recorder import summarize_s

    hits, misses = int(getattr(totals, "cache_hits", 0)), int(getattr(totals, "cache_misses", 0))
    if hits + misses == 0 and server is None:
        return None
    client = {"responses": hits + misses, "hits": hits, "misses": misses,
              "hit_ratio": hits / (hits + misses) if hits + misses else None,
              "latency_hit_s": summarize_s(totals.hist["hit"]), "latency_miss_s": summarize_s(totals.hist["miss"])}
    return {"client": client, "server": dict(server) if server is not None else None,
            "expected": dict(expected) if expected is not None else None}


def build_summary(
    *,
    run_id: str,
    asrtk_version: str,
    created: datetime,
    interrupted: bool,
    label: str | None,
    scenario: Any,
    target_url: str,
    server_info: Mapping[str, Any] | None,
    processes: int,
    measured_s: float,
    totals: Any,
    intervals: Sequence[Mapping[str, Any]],
    loadgen_cpu: tuple[float | None, float | None],
    host: dict[str, Any],
    gpu: dict[str, Any],
    server: dict[str, Any] | None,
    thresholds: Any,
    extra_warnings: Sequence[str] = (),
    cache_server: Mapping[str, Any] | None = None,
    popularity: Sequence[Mapping[str, Any]] = (),
    local_target: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``asrtk.result/v1`` document of one run.

    ``totals`` are the merged totals of the recorder (requests whose intended start is in the
    measured window), ``intervals`` the merged per-second intervals (binned by completion),
    ``host``/``gpu``/``server`` the samplers' summaries of the measured window, ``cache_server``
    the target's cache counters over it; ``popularity`` the request sets' popularity models (with
    their mix ``share``), for the expected cache hit ratio; ``local_target`` the target's processes
    on the load host and how they were found (``target.local``; None: none).
    """
    from toolkit.recorder import summarize_s

    m = totals
    warmup = scenario.warmup_s
    lg_mean, lg_max = loadgen_cpu
    lag = summarize_s(m.hist["lag"])
    valid, lg_warnings = loadgen_verdict(lg_mean, lag["p99"], m.late_starts, thresholds)
    warnings = list(extra_warnings) + lg_warnings + host_warnings(host)
    if interrupted:
        warnings.append("run interrupted (Ctrl-C): partial results")

    error_rate = (m.errors / m.total) if m.total else 0.0
    rtf = summarize_s(m.hist["rtf"]) if m.hist["rtf"].get_total_count() else None
    stream = None
    if m.hist["partial"].get_total_count() or m.hist["final"].get_total_count():
        def _s(h: Any) -> dict[str, Any]:
            d = summarize_s(h)
            return {k: d[k] for k in ("p50", "p95", "p99", "max", "count")}
        stream = {"partial_latency_s": _s(m.hist["partial"]), "final_latency_s": _s(m.hist["final"])}
    dur = measured_s if measured_s > 0 else None
    # Throughput counts completions inside the measured window (by completion second): an
    # overloaded target cannot look fast because its backlog finished after the window.
    win_end = warmup + measured_s
    done = [iv for iv in intervals if warmup <= iv["t"] < win_end]
    done_ok = sum(iv["ok"] for iv in done)
    done_audio = sum(iv["audio_s"] for iv in done)
    done_tx = sum(iv["bytes_sent"] for iv in done)
    done_rx = sum(iv["bytes_received"] for iv in done)
    host = dict(host)
    host["target_cpu_s_per_request"] = _per_request(host.get("target_cpu_cores_mean"), dur, done_ok)
    if server is not None:
        server = dict(server)
        server["cpu_s_per_request"] = _per_request(server.get("cpu_cores_mean"), dur, done_ok)
    load = scenario.load
    return {
        "schema": SCHEMA,
        "run_id": run_id,
        "asrtk_version": asrtk_version,
        "created": created.isoformat().replace("+00:00", "Z"),
        "complete": not interrupted,
        "incomplete_reason": "interrupted" if interrupted else None,
        "label": label,
        "scenario": {"name": scenario.name, "source": scenario.source,
                     "protocol": scenario.protocol.kind if not scenario.mix else "mix", "seed": scenario.seed,
                     "repeat": _repeat_models(scenario)},
        "target": {"url": target_url, "embedded": server_info is not None,
                   "server": dict(server_info) if server_info is not None else None,
                   "local": dict(local_target) if local_target is not None else None},
        "load": {"mode": load.mode,
                 "offered_rps": (m.scheduled / dur) if dur else None,
                 "achieved_rps": (done_ok / dur) if dur else None,
                 "users": max((s.users or 0) for s in load.stages) if load.mode == "closed" else None,
                 "processes": processes,
                 "arrival": load.arrival if load.mode == "open" else None,
                 "stages": [{"duration_s": s.duration_s, "rate": s.rate, "users": s.users, "ramp": s.ramp}
                            for s in load.stages]},
        "duration_s": measured_s,
        "warmup_s": warmup,
        "requests": {"total": m.total, "ok": m.ok, "errors": m.errors, "error_rate": error_rate,
                     "late_starts": m.late_starts, "by_class": dict(sorted(m.by_class.items()))},
        "throughput": {"rps": (done_ok / dur) if dur else None,
                       "audio_s_per_s": (done_audio / dur) if dur else None,
                       "bytes_sent_per_s": (done_tx / dur) if dur else None,
                       "bytes_received_per_s": (done_rx / dur) if dur else None},
        "latency_s": summarize_s(m.hist["lat"]),
        "rtf": {k: rtf[k] for k in ("p50", "p95", "p99", "mean")} if rtf else None,
        "stream": stream,
        "slo": slo_checks(scenario, m, error_rate),
        "loadgen": {"valid": valid, "warnings": warnings, "processes": processes,
                    "cpu_mean_percent": lg_mean, "cpu_max_percent": lg_max,
                    "schedule_lag_p50_s": lag["p50"], "schedule_lag_p99_s": lag["p99"],
                    "schedule_lag_max_s": lag["max"],
                    "cpu_threshold_percent": thresholds.loadgen_cpu_percent,
                    "schedule_lag_threshold_s": thresholds.schedule_lag_p99_s},
        "gpu": gpu,
        "host": host,
        "server": server,
        "cache": cache_summary(m, cache_server, expected_cache(popularity, m.scheduled,
                                                               getattr(m, "scheduled_before", 0))),
        "files": dict(FILES),
    }


def _repeat_models(scenario: Any) -> list[dict[str, Any]] | None:
    """The repeat models of the scenarios that sent requests; None when none has one."""
    models = [{"scenario": leaf.name, "distribution": leaf.repeat.distribution, "s": leaf.repeat.s,
               "catalog": leaf.repeat.catalog, "cache_entries": leaf.repeat.cache_entries}
              for leaf in scenario.leaves() if getattr(leaf, "repeat", None) is not None]
    return models or None


def write_run_files(
    run_dir: Path,
    *,
    timeseries: Iterable[Mapping[str, Any]],
    telemetry: Iterable[Mapping[str, Any]],
    gpu_count: int,
    server_metrics: Iterable[Mapping[str, Any]],
) -> None:
    """The CSV files of a run directory (``latency.hlog`` is the recorder's, ``summary.json`` last)."""
    run_dir = Path(run_dir)
    write_csv(run_dir / FILES["timeseries"], TIMESERIES_COLUMNS, timeseries)
    write_csv(run_dir / FILES["telemetry"], telemetry_columns(gpu_count), telemetry)
    write_csv(run_dir / FILES["server_metrics"], SERVER_METRICS_COLUMNS, server_metrics)


# ----------------------------------------------------------------------------- verdicts

_ERROR_MEANING = {
    "timeout": "no response within the per-request timeout",
    "connection": "the connection was refused, reset or closed",
    "protocol": "the response was not valid HTTP",
    "other": "the request failed before a response (see the target's logs)",
}


def describe_error_class(cls: str) -> str:
    """What an error class means, in a few words (``http_501`` -> ``HTTP 501 Not Implemented``)."""
    if cls.startswith("http_") and cls[5:].isdigit():
        from http import HTTPStatus

        code = int(cls[5:])
        try:
            return f"the target answered HTTP {code} {HTTPStatus(code).phrase}"
        except ValueError:
            return f"the target answered HTTP {code}"
    return _ERROR_MEANING.get(cls, cls)


def failure_line(summary: Mapping[str, Any]) -> str | None:
    """One line when no request of the run succeeded (the run itself failed), else None.

    It names the most common error class, how many requests it took and what it means, e.g.
    ``no request succeeded: 12 of 12 failed, most often timeout (12): no response within ...``.
    """
    req = summary.get("requests") or {}
    total, ok = int(req.get("total") or 0), int(req.get("ok") or 0)
    if ok > 0:
        return None
    target = (summary.get("target") or {}).get("url") or "the target"
    if total == 0:
        return f"no request completed in the measured window against {target}: nothing to measure"
    by_class = req.get("by_class") or {}
    cls, n = max(by_class.items(), key=lambda kv: (kv[1], kv[0])) if by_class else ("other", total)
    return (f"no request succeeded against {target}: {total} of {total} failed, most often {cls} ({n}): "
            f"{describe_error_class(cls)}")


# exit codes every command shares (README "Exit codes"); 4 = no verdict possible
EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, EXIT_BREACHED, EXIT_INCONCLUSIVE, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130


def bench_verdict(summary: Mapping[str, Any], fail_on_slo: bool = True) -> tuple[int, str | None]:
    """The exit code of one bench run and the line that explains it (None for a plain pass).

    130 interrupted (partial results written); 1 no request succeeded; 3 the SLO failed on a
    quiet host with a valid load generator; 4 the SLO failed but the host was disturbed or the
    load generator invalid (both only ever inflate latency, so a pass still holds and a failure
    may be theirs); 0 otherwise (or when ``fail_on_slo`` is off).
    """
    if not summary.get("complete", True):
        return EXIT_INTERRUPTED, "interrupted: partial results written, marked incomplete"
    line = failure_line(summary)
    if line is not None:
        return EXIT_RUN_FAILED, line
    slo = summary.get("slo") or {}
    doubts = []
    if (summary.get("host") or {}).get("disturbed"):
        doubts.append("the host was disturbed by other work")
    if not (summary.get("loadgen") or {}).get("valid", True):
        doubts.append("the load generator was the bottleneck (invalid)")
    if slo.get("passed", True) or not fail_on_slo:
        if doubts:  # the figures stand as upper bounds, and say so where the exit code is read
            return EXIT_OK, (f"SLO {'met' if slo.get('passed', True) else 'not judged (--no-fail-on-slo)'}, but "
                             f"{' and '.join(doubts)}: latency may be inflated and will not repeat")
        return EXIT_OK, None
    failed = ", ".join(f"{c['name']} {_fmt_measured(c.get('measured'))} > {c['threshold']:g}"
                       for c in slo.get("checks", []) if not c.get("passed"))
    if doubts:
        return EXIT_INCONCLUSIVE, (f"inconclusive: the SLO failed ({failed}) but {' and '.join(doubts)}; "
                                   "rerun on a quiet host (see the warnings above)")
    return EXIT_BREACHED, f"SLO failed: {failed}"


def _fmt_measured(v: Any) -> str:
    return "-" if v is None else f"{v:.4g}"
