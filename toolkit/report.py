"""Run reports: ``report.html`` (self-contained, plotly.js's basic bundle inlined once, opens offline) and ``report.md``.

``render_markdown`` and ``render_html`` are pure: they take the summary and the rows of
timeseries.csv / telemetry.csv (and optionally the latency spectrum and server metrics)
and return text. ``write_reports`` is the only function here that touches files.
"""

from __future__ import annotations

import html
import math
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from toolkit import atomic, plotjs

Row = Mapping[str, Any]
Spectrum = Sequence[tuple[float, float]]

SPECTRUM_TABLE_PERCENTILES = (50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99, 100.0)
_GPU_COL = re.compile(r"^gpu(\d+)_util_ratio$")


# ----------------------------------------------------------------------------- formatting helpers


def _get(d: Any, dotted: str, default: Any = None) -> Any:
    cur = d
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or cur.get(part) is None:
            return default
        cur = cur[part]
    return cur


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def fmt_s(v: Any) -> str:
    """Seconds with a readable unit: 0.0123 -> '12.3 ms', 4.56 -> '4.56 s'."""
    x = _num(v)
    if x is None:
        return "–"
    if abs(x) < 1.0:
        return f"{x * 1000:.3g} ms" if abs(x) >= 0.001 or x == 0 else f"{x * 1e6:.3g} µs"
    return f"{x:.3g} s" if abs(x) < 1000 else f"{x:,.0f} s"


def fmt_num(v: Any, digits: int = 3) -> str:
    x = _num(v)
    if x is None:
        return "–"
    if x == int(x) and abs(x) < 1e15:
        return f"{int(x):,}"
    return f"{x:.{digits}g}"


def fmt_pct(v: Any, ratio: bool = True) -> str:
    """A ratio (0.012) or a percent (1.2, ratio=False) as '1.2 %'."""
    x = _num(v)
    if x is None:
        return "–"
    return f"{x * 100 if ratio else x:.3g} %"


def fmt_bytes(v: Any) -> str:
    x = _num(v)
    if x is None:
        return "–"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(x) < 1024 or unit == "TiB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.3g} {unit}"
        x /= 1024
    return "–"


def _threshold_fmt(name: str, v: Any) -> str:
    """SLO values: latencies in seconds, rates as percentages, RTF as a plain ratio."""
    if "error" in name:
        return fmt_pct(v)
    if "rtf" in name:
        return fmt_num(v)
    return fmt_s(v)


# ----------------------------------------------------------------------------- verdict and tables


def tail_note(count: Any) -> str | None:
    """Which tail percentiles ``count`` samples cannot resolve, or None.

    With nearest-rank percentiles, p equals the maximum whenever count < 1 / (1 - p):
    a p99 from 23 requests is just the slowest request.
    """
    if not isinstance(count, (int, float)) or count <= 0:
        return None
    n = int(count)
    unresolved = [name for name, p in (("p95", 0.95), ("p99", 0.99), ("p99.9", 0.999)) if n < 1.0 / (1.0 - p)]
    if not unresolved:
        return None
    return (f"only {n} requests measured: {', '.join(unresolved)} equal the maximum; run longer "
            f"(--duration) or at a higher rate for a resolved tail")


def _models_text(expected: Row) -> str:
    parts = []
    for m in expected.get("models") or []:
        if not m.get("repeat"):
            continue
        shape = f"zipf s={fmt_num(m.get('s'))}" if m.get("distribution") == "zipf" else "uniform"
        lru = f", LRU of {fmt_num(m.get('cache_entries'))}" if m.get("cache_entries") else ""
        parts.append(f"{shape} over {fmt_num(m.get('catalog'))} items{lru}")
    return "; ".join(dict.fromkeys(parts))


def cache_line(summary: Row) -> str | None:
    """One line on the target's cache: hit ratio seen by the client (X-Cache), by the server
    (its counters) and expected from the scenario's repeat model; None without a cache."""
    cache = summary.get("cache")
    if not isinstance(cache, Mapping):
        return None
    client = cache.get("client") or {}
    parts = []
    if client.get("responses"):
        parts.append(f"{fmt_pct(client.get('hit_ratio'))} of {fmt_num(client.get('responses'))} responses "
                     f"(p50 hit {fmt_s(_get(client, 'latency_hit_s.p50'))}, "
                     f"miss {fmt_s(_get(client, 'latency_miss_s.p50'))})")
    else:
        parts.append("no response carried X-Cache")
    server = cache.get("server")
    if isinstance(server, Mapping):
        parts.append(f"server {fmt_pct(server.get('hit_ratio'))}")
    expected = cache.get("expected")
    if isinstance(expected, Mapping):
        parts.append(f"expected {fmt_pct(expected.get('hit_ratio'))} ({_models_text(expected)})")
    return ", ".join(parts)


def local_target_line(local: Any) -> str | None:
    """Which processes on the load host were counted as the target and how they were found, one
    line: ``nginx 1200 (nginx master, listening on port 8080); python3 1300 at 127.0.0.1:8001,
    python3 1310 at 127.0.0.1:8002 (nginx upstreams from /etc/nginx/nginx.conf)``. None when none
    was (a remote target)."""
    if not isinstance(local, Mapping) or not local.get("processes"):
        return None
    groups: dict[str, list[str]] = {}
    for p in local["processes"]:
        how = str(p.get("found_by", "?"))
        # "nginx upstream 127.0.0.1:8001 from /x/nginx.conf": one group per config, the address by the pid
        m = re.match(r"^nginx upstream (\S+) from (.+)$", how)
        key, tag = (f"nginx upstreams from {m.group(2)}", f" at {m.group(1)}") if m else (how, "")
        groups.setdefault(key, []).append(f"{p.get('name', '?')} {p.get('pid')}{tag}")
    return "; ".join(f"{', '.join(procs)} ({how})" for how, procs in groups.items())


def scraped_line(summary: Row) -> str | None:
    """The scraped /metrics URLs and why those, one line; None when nothing was scraped."""
    server = summary.get("server")
    if not isinstance(server, Mapping) or not server.get("scraped"):
        return None
    per_url = {r.get("url"): r for r in server.get("per_url") or [] if isinstance(r, Mapping)}
    urls = []
    for u in server["scraped"]:
        rps = (per_url.get(u) or {}).get("requests_rps")
        urls.append(str(u) + (f" ({fmt_num(rps)} req/s)" if rps is not None else ""))
    source = server.get("scraped_from")
    return ", ".join(urls) + (f"; source: {source}" if source else "")


def _cache_table(cache: Row) -> tuple[str, list[str], list[list[str]]]:
    client = cache.get("client") or {}
    rows = [["client (X-Cache)", fmt_pct(client.get("hit_ratio")), fmt_num(client.get("responses")), "", "", ""]]
    for label, key, n in (("  hits", "latency_hit_s", "hits"), ("  misses", "latency_miss_s", "misses")):
        lat = client.get(key) or {}
        rows.append([label, "", fmt_num(client.get(n)), *(fmt_s(lat.get(k)) for k in ("p50", "p95", "p99"))])
    server = cache.get("server")
    if isinstance(server, Mapping):
        levels = ", ".join(f"{k} {fmt_num(v.get('hits'))}/{fmt_num(v.get('lookups'))}"
                           for k, v in (server.get("levels") or {}).items())
        rows.append([f"server (/metrics{': ' + levels if levels else ''})", fmt_pct(server.get("hit_ratio")),
                     fmt_num(server.get("requests")), "", "", ""])
    expected = cache.get("expected")
    if isinstance(expected, Mapping):
        rows.append([f"expected ({_models_text(expected)})", fmt_pct(expected.get("hit_ratio")),
                     fmt_num(expected.get("requests")), "", "", ""])
        if expected.get("steady_hit_ratio") is not None:
            rows.append(["expected, warm LRU in a long run", fmt_pct(expected.get("steady_hit_ratio")), "", "", "", ""])
    return ("Cache (successful responses, measured window)", ["", "hit ratio", "requests", "p50", "p95", "p99"],
            rows)


def verdict(summary: Row) -> dict[str, Any]:
    """The three headline facts: SLO pass/fail, run valid/invalid, complete/incomplete."""
    slo_passed = _get(summary, "slo.passed")
    valid = _get(summary, "loadgen.valid")
    complete = bool(summary.get("complete"))
    return {
        "slo": "PASS" if slo_passed is True else ("FAIL" if slo_passed is False else "N/A"),
        "valid": "VALID" if valid is True else ("INVALID" if valid is False else "UNKNOWN"),
        "complete": "COMPLETE" if complete else "INCOMPLETE",
        "incomplete_reason": None if complete else (summary.get("incomplete_reason") or "unknown"),
        "warnings": list(_get(summary, "loadgen.warnings", []) or []),
        "notes": [n for n in (tail_note(_get(summary, "latency_s.count")),) if n],
    }


def _tables(summary: Row) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) for every block of numbers; shared by the HTML and Markdown renderers."""
    tables: list[tuple[str, list[str], list[list[str]]]] = []
    lat = summary.get("latency_s") or {}
    tables.append(("Latency (from intended start, warm-up excluded)",
                   ["count", "min", "mean", "p50", "p90", "p95", "p99", "p99.9", "max"],
                   [[fmt_num(lat.get("count")), *(fmt_s(lat.get(k)) for k in
                                                  ("min", "mean", "p50", "p90", "p95", "p99", "p999", "max"))]]))
    rtf = summary.get("rtf")
    if isinstance(rtf, Mapping):
        tables.append(("Real-time factor (latency / audio seconds)", ["p50", "p95", "p99", "mean"],
                       [[fmt_num(rtf.get(k)) for k in ("p50", "p95", "p99", "mean")]]))
    stream = summary.get("stream")
    if isinstance(stream, Mapping):
        rows = []
        for key, label in (("partial_latency_s", "partial (per chunk)"), ("final_latency_s", "final (after end of audio)")):
            s = stream.get(key) or {}
            rows.append([label, fmt_num(s.get("count")), *(fmt_s(s.get(k)) for k in ("p50", "p95", "p99", "max"))])
        tables.append(("Streaming latency", ["", "count", "p50", "p95", "p99", "max"], rows))
    req = summary.get("requests") or {}
    tp = summary.get("throughput") or {}
    load = summary.get("load") or {}
    tables.append(("Requests and throughput",
                   ["total", "ok", "errors", "error rate", "late starts", "offered rps", "achieved rps",
                    "audio s/s", "sent/s", "received/s"],
                   [[fmt_num(req.get("total")), fmt_num(req.get("ok")), fmt_num(req.get("errors")),
                     fmt_pct(req.get("error_rate")), fmt_num(req.get("late_starts")),
                     fmt_num(load.get("offered_rps")), fmt_num(tp.get("rps", load.get("achieved_rps"))),
                     fmt_num(tp.get("audio_s_per_s")), fmt_bytes(tp.get("bytes_sent_per_s")),
                     fmt_bytes(tp.get("bytes_received_per_s"))]]))
    by_class = req.get("by_class") or {}
    if by_class:
        tables.append(("Errors by class", ["class", "count"],
                       [[str(k), fmt_num(v)] for k, v in sorted(by_class.items(), key=lambda kv: (-(kv[1] or 0), kv[0]))]))
    checks = _get(summary, "slo.checks", []) or []
    if checks:
        tables.append(("SLO checks", ["check", "threshold", "measured", "result"],
                       [[str(c.get("name")), _threshold_fmt(str(c.get("name")), c.get("threshold")),
                         _threshold_fmt(str(c.get("name")), c.get("measured")),
                         "pass" if c.get("passed") else "FAIL"] for c in checks]))
    lg = summary.get("loadgen") or {}
    tables.append(("Load generator", ["valid", "processes", "CPU max", "schedule lag p50", "p99", "max"],
                   [["yes" if lg.get("valid") else "no", fmt_num(lg.get("processes")),
                     fmt_pct(lg.get("cpu_max_percent"), ratio=False), fmt_s(lg.get("schedule_lag_p50_s")),
                     fmt_s(lg.get("schedule_lag_p99_s")), fmt_s(lg.get("schedule_lag_max_s"))]]))
    host = summary.get("host") or {}
    tables.append(("Load host", ["cores", "CPU mean", "CPU max", "memory used max"],
                   [[fmt_num(host.get("cores")), fmt_pct(host.get("cpu_mean_percent"), ratio=False),
                     fmt_pct(host.get("cpu_max_percent"), ratio=False), fmt_bytes(host.get("memory_used_max_bytes"))]]))
    if host.get("interference_cpu_cores_mean") is not None:
        cpu_req = host.get("target_cpu_s_per_request")
        tables.append(("Who used the CPU (cores, mean)",
                       ["local target", "target CPU per request", "other processes", "CPU steal", "disturbed"],
                       [[fmt_num(host.get("target_cpu_cores_mean")),
                         "–" if cpu_req is None else f"{cpu_req * 1000:.3g} ms",
                         fmt_num(host.get("other_cpu_cores_mean")), fmt_num(host.get("steal_cpu_cores_mean")),
                         ("YES (> " + fmt_num(host.get("interference_threshold_cores")) + ")")
                         if host.get("disturbed") else "no"]]))
    gpu = summary.get("gpu") or {}
    devices = gpu.get("devices") or []
    if devices:
        tables.append(("GPUs", ["index", "name", "util mean", "util max", "memory used max", "memory total",
                                "power mean"],
                       [[fmt_num(d.get("index")), str(d.get("name", "")), fmt_pct(d.get("util_mean_ratio")),
                         fmt_pct(d.get("util_max_ratio")), fmt_bytes(d.get("memory_used_max_bytes")),
                         fmt_bytes(d.get("memory_total_bytes")),
                         f"{fmt_num(d.get('power_mean_watts'))} W"] for d in devices]))
    else:
        tables.append(("GPUs", ["available", "reason"], [["no", str(gpu.get("reason") or "none detected")]]))
    server = summary.get("server")
    if isinstance(server, Mapping):
        tables.append(("Server (scraped /metrics)",
                       ["req/s", "queue depth max", "batch size mean", "inference mean", "queue wait mean",
                        "rejected", "CPU (cores)"],
                       [[fmt_num(server.get("requests_rps")), fmt_num(server.get("queue_depth_max")),
                         fmt_num(server.get("batch_size_mean")),
                         fmt_s(server.get("inference_s_mean")), fmt_s(server.get("queue_wait_s_mean")),
                         fmt_num(server.get("rejected_total")), fmt_num(server.get("cpu_cores_mean"))]]))
    cache = summary.get("cache")
    if isinstance(cache, Mapping):
        tables.append(_cache_table(cache))
    return tables


def _run_facts(summary: Row) -> list[tuple[str, str]]:
    target = summary.get("target") or {}
    server = target.get("server") or {}
    load = summary.get("load") or {}
    emb = "embedded reference server" if target.get("embedded") else "external"
    if target.get("embedded") and server:
        emb += f" ({', '.join(f'{k}={v}' for k, v in server.items())})"
    level = (f"{fmt_num(load.get('offered_rps'))} req/s offered" if load.get("mode") == "open"
             else f"{fmt_num(load.get('users'))} users")
    return [
        ("run", str(summary.get("run_id", "?"))),
        ("created", str(summary.get("created", "?"))),
        ("scenario", f"{_get(summary, 'scenario.name', '?')} ({_get(summary, 'scenario.protocol', '?')}, "
                     f"seed {_get(summary, 'scenario.seed', '?')})"),
        ("target", f"{target.get('url', '?')} — {emb}"),
        *([("target processes", line)] if (line := local_target_line(target.get("local"))) else []),
        *([("server metrics", line)] if (line := scraped_line(summary)) else []),
        ("load", f"{load.get('mode', '?')} loop, {level}, {fmt_num(load.get('processes'))} process(es)"),
        ("window", f"{fmt_num(summary.get('duration_s'))} s measured after {fmt_num(summary.get('warmup_s'))} s "
                   f"warm-up"),
        ("asrtk", str(summary.get("asrtk_version", "?"))),
    ]


def _spectrum_rows(spectrum: Spectrum) -> list[list[str]]:
    rows = []
    for want in SPECTRUM_TABLE_PERCENTILES:
        # Nearest computed point at or above the wanted percentile.
        candidates = [v for p, v in spectrum if p >= want - 1e-9]
        if candidates:
            rows.append([f"{want:g}", fmt_s(candidates[0])])
    return rows


def _downsample(rows: Sequence[Row], max_rows: int) -> list[Row]:
    if len(rows) <= max_rows:
        return list(rows)
    step = math.ceil(len(rows) / max_rows)
    return [r for i, r in enumerate(rows) if i % step == 0]


# ----------------------------------------------------------------------------- Markdown


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    esc = [str(h).replace("|", "\\|") for h in header]
    lines = ["| " + " | ".join(esc) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |")
    return "\n".join(lines)


def render_markdown(summary: Row, timeseries_rows: Sequence[Row], telemetry_rows: Sequence[Row], *,
                    latency_spectrum: Spectrum | None = None) -> str:
    """The report as Markdown tables (same numbers as the HTML report)."""
    v = verdict(summary)
    out = [f"# asrtk bench: {_get(summary, 'scenario.name', '?')} — {summary.get('run_id', '?')}", ""]
    status = f"**SLO {v['slo']}** · **run {v['valid']}** · **{v['complete']}**"
    if v["incomplete_reason"]:
        status += f" ({v['incomplete_reason']})"
    out += [status, ""]
    for w in v["warnings"]:
        out.append(f"> warning: {w}")
    for n in v["notes"]:
        out.append(f"> note: {n}")
    if v["warnings"] or v["notes"]:
        out.append("")
    out += [_md_table(["", ""], [[k, val] for k, val in _run_facts(summary)]), ""]
    for title, header, rows in _tables(summary):
        out += [f"## {title}", "", _md_table(header, rows), ""]
    if latency_spectrum:
        out += ["## Latency percentile spectrum (latency.hlog)", "",
                _md_table(["percentile", "latency"], _spectrum_rows(latency_spectrum)), ""]
    if timeseries_rows:
        ts = _downsample(timeseries_rows, 60)
        out += ["## Over time (timeseries.csv" + (", sampled" if len(ts) < len(timeseries_rows) else "") + ")", "",
                _md_table(["t (s)", "phase", "offered rps", "achieved rps", "errors", "in flight", "p50", "p95",
                           "p99"],
                          [[fmt_num(r.get("t_s")), str(r.get("phase") or ""), fmt_num(r.get("offered_rps")),
                            fmt_num(r.get("achieved_rps")), fmt_num(r.get("errors")), fmt_num(r.get("inflight")),
                            fmt_s(r.get("p50_s")), fmt_s(r.get("p95_s")), fmt_s(r.get("p99_s"))] for r in ts]), ""]
    if telemetry_rows:
        out += ["## Host and GPU telemetry (telemetry.csv)", "", _md_table(
            ["series", "mean", "max"], [[name, fmt(mean), fmt(mx)] for name, mean, mx, fmt in
                                        _telemetry_stats(telemetry_rows)]), ""]
    files = summary.get("files") or {}
    if files:
        out += ["## Files", "", _md_table(["what", "file"], [[k, str(f)] for k, f in files.items()]), ""]
    return "\n".join(out).rstrip() + "\n"


def _telemetry_stats(rows: Sequence[Row]) -> list[tuple[str, float | None, float | None, Any]]:
    series: list[tuple[str, str, Any]] = [
        ("host CPU", "cpu_percent", lambda x: fmt_pct(x, ratio=False)),
        ("busiest core", "cpu_max_core_percent", lambda x: fmt_pct(x, ratio=False)),
        ("load generator CPU", "loadgen_cpu_percent", lambda x: fmt_pct(x, ratio=False)),
        ("local target CPU (cores)", "target_cpu_cores", fmt_num),
        ("other processes CPU (cores)", "other_cpu_cores", fmt_num),
        ("CPU steal (cores)", "steal_cpu_cores", fmt_num),
        ("host memory used", "mem_used_bytes", fmt_bytes),
    ]
    for i in _gpu_indices(rows):
        series += [(f"GPU {i} util", f"gpu{i}_util_ratio", fmt_pct),
                   (f"GPU {i} memory used", f"gpu{i}_mem_used_bytes", fmt_bytes),
                   (f"GPU {i} power", f"gpu{i}_power_watts", lambda x: f"{fmt_num(x)} W")]
    out = []
    for label, col, fmt in series:
        vals = [x for x in (_num(r.get(col)) for r in rows) if x is not None]
        if vals:
            out.append((label, sum(vals) / len(vals), max(vals), fmt))
    return out


def _gpu_indices(rows: Sequence[Row]) -> list[int]:
    if not rows:
        return []
    found = {int(m.group(1)) for k in rows[0].keys() if (m := _GPU_COL.match(str(k)))}
    return sorted(found)


# ----------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1200px;color:#222}
h1{font-size:1.5em;margin-bottom:4px} h2{font-size:1.15em;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0;font-size:.92em} td,th{border:1px solid #ddd;padding:4px 10px;
text-align:right} th{background:#f5f5f5} td:first-child,th:first-child{text-align:left}
.badges span{display:inline-block;padding:4px 12px;margin:6px 8px 6px 0;border-radius:4px;font-weight:600;color:#fff}
.ok{background:#2e7d32}.bad{background:#c62828}.warn{background:#ef6c00}.na{background:#757575}
.warning{background:#fff3e0;border-left:4px solid #ef6c00;padding:6px 10px;margin:4px 0}
.facts td{text-align:left} .note{color:#666;font-size:.9em}
"""


def _html_table(header: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _badge(text: str, good: bool | None) -> str:
    cls = "na" if good is None else ("ok" if good else "bad")
    return f'<span class="{cls}">{html.escape(text)}</span>'


def _col(rows: Sequence[Row], key: str) -> list[float | None]:
    """A column to plot: 4 significant digits keep an hour-long run's report small (tables show full values)."""
    return plotjs.compact([_num(r.get(key)) for r in rows])


MAX_CHART_POINTS = 1200  # per series: an hour of 1 s rows is drawn as 3 s buckets


def bucket_seconds(n_rows: int) -> int:
    return max(1, math.ceil(n_rows / MAX_CHART_POINTS))


def _buckets(rows: Sequence[Row]) -> list[Row]:
    """Buckets of consecutive rows for the charts: latencies, sizes and in-flight counts take the
    bucket's worst (max), rates and utilisations its mean; text (the phase) the first row's."""
    k = bucket_seconds(len(rows))
    if k == 1:
        return list(rows)
    out: list[Row] = []
    for i in range(0, len(rows), k):
        chunk = rows[i:i + k]
        merged: dict[str, Any] = dict(chunk[0])
        for key in chunk[0]:
            vals = [v for v in (_num(r.get(key)) for r in chunk) if v is not None]
            if key == "t_s" or not vals:
                continue
            worst = key.endswith(("_s", "_bytes")) or "inflight" in key or "lag" in key or "memory" in key
            merged[key] = max(vals) if worst else sum(vals) / len(vals)
        out.append(merged)
    return out


def _figures(summary: Row, ts: Sequence[Row], tel: Sequence[Row], spectrum: Spectrum | None,
             server_rows: Sequence[Row] | None) -> list[tuple[str, str, Any]]:
    """(div id, title, plotly figure) for every chart the data allows."""
    import plotly.graph_objects as go

    figs: list[tuple[str, str, Any]] = []
    warmup = _num(summary.get("warmup_s")) or 0.0
    raw_ts = ts
    ts, tel = _buckets(ts), _buckets(tel)

    def layout(fig: Any, title: str, ytitle: str, xtitle: str = "time since start (s)") -> Any:
        fig.update_layout(title=title, xaxis_title=xtitle, yaxis_title=ytitle, height=360,
                          margin=dict(l=60, r=20, t=50, b=50), legend=dict(orientation="h", y=-0.2),
                          **plotjs.LAYOUT)
        if warmup > 0 and xtitle.startswith("time"):
            fig.add_vrect(x0=0, x1=warmup, fillcolor="#999", opacity=0.12, line_width=0,
                          annotation_text="warm-up", annotation_position="top left")
        return fig

    if ts:
        t = _col(ts, "t_s")
        fig = go.Figure()
        for key, name in (("p50_s", "p50"), ("p95_s", "p95"), ("p99_s", "p99"), ("max_s", "max")):
            fig.add_trace(go.Scatter(x=t, y=_col(ts, key), mode="lines", name=name,
                                     line=dict(dash="dot") if key == "max_s" else None))
        slo_latency = next((c.get("threshold") for c in (_get(summary, "slo.checks", []) or [])
                            if str(c.get("name", "")).startswith("latency")), None)
        if _num(slo_latency) is not None:
            fig.add_hline(y=float(slo_latency), line_dash="dash", line_color="#c62828",
                          annotation_text="SLO", annotation_position="top right")
        figs.append(("chart-latency", "Latency percentiles per second", layout(fig, "Latency per second", "seconds")))

        fig = go.Figure()
        fig.add_trace(go.Scatter(x=t, y=_col(ts, "offered_rps"), mode="lines", name="offered req/s",
                                 line=dict(dash="dash")))
        fig.add_trace(go.Scatter(x=t, y=_col(ts, "achieved_rps"), mode="lines", name="achieved req/s"))
        fig.add_trace(go.Bar(x=t, y=_col(ts, "errors"), name="errors/s", marker_color="#c62828", opacity=0.6))
        fig.add_trace(go.Scatter(x=t, y=_col(ts, "inflight"), mode="lines", name="in flight", yaxis="y2",
                                 line=dict(color="#888", width=1)))
        fig.update_layout(yaxis2=dict(title="in flight", overlaying="y", side="right", showgrid=False))
        figs.append(("chart-throughput", "Throughput offered vs achieved", layout(fig, "Throughput", "requests/s")))

    if spectrum:
        xs = [1.0 / max(1.0 - p / 100.0, 1e-6) for p, _ in spectrum]
        fig = go.Figure(go.Scatter(x=xs, y=[v for _, v in spectrum], mode="lines+markers", name="latency",
                                   hovertext=[f"p{p:.4g}" for p, _ in spectrum]))
        ticks = [1, 2, 10, 100, 1000, 10000, 1e6]
        fig.update_xaxes(type="log", tickvals=ticks, ticktext=["0%", "50%", "90%", "99%", "99.9%", "99.99%", "max"])
        figs.append(("chart-distribution", "Latency distribution (percentile spectrum, warm-up excluded)",
                     layout(fig, "Latency percentile spectrum (warm-up excluded)", "seconds", "percentile")))
    elif ts:
        p95 = [x for x in _col(raw_ts, "p95_s") if x is not None]
        if p95:
            import numpy as np

            counts, edges = np.histogram(p95, bins=min(30, max(1, len(set(p95)))))
            fig = go.Figure(go.Bar(x=((edges[:-1] + edges[1:]) / 2).tolist(), y=counts.tolist(),
                                   width=(edges[1:] - edges[:-1]).tolist(), name="per-second p95"))
            figs.append(("chart-distribution", "Distribution of per-second p95 latency (no latency.hlog)",
                         layout(fig, "Per-second p95 latency (no latency.hlog)", "seconds of the run (count)",
                                "p95 latency (s)")))

    if tel:
        t = _col(tel, "t_s")
        fig = go.Figure()
        for key, name in (("cpu_percent", "host CPU %"), ("cpu_max_core_percent", "busiest core %"),
                          ("loadgen_cpu_percent", "load generator CPU %")):
            if any(v is not None for v in _col(tel, key)):
                fig.add_trace(go.Scatter(x=t, y=_col(tel, key), mode="lines", name=name))
        figs.append(("chart-cpu", "Host CPU", layout(fig, "Host CPU", "percent")))
        who = [(k, n) for k, n in (("target_cpu_cores", "local target"), ("other_cpu_cores", "other processes"),
                                   ("steal_cpu_cores", "CPU steal (hypervisor)"))
               if any(v is not None for v in _col(tel, k))]
        if who:
            fig = go.Figure()
            for key, name in who:
                fig.add_trace(go.Scatter(x=t, y=_col(tel, key), mode="lines", name=name, stackgroup="cpu"))
            figs.append(("chart-cpu-who", "Who used the CPU (cores): other work and steal make runs disagree",
                         layout(fig, "Who used the CPU", "cores")))
        gpus = _gpu_indices(tel)
        if gpus:
            fig = go.Figure()
            for i in gpus:
                fig.add_trace(go.Scatter(x=t, y=[None if v is None else v * 100 for v in _col(tel, f"gpu{i}_util_ratio")],
                                         mode="lines", name=f"GPU {i} util %"))
                used, total = _col(tel, f"gpu{i}_mem_used_bytes"), _col(tel, f"gpu{i}_mem_total_bytes")
                fig.add_trace(go.Scatter(x=t, y=[None if u is None or not tt else 100 * u / tt
                                                 for u, tt in zip(used, total)],
                                         mode="lines", name=f"GPU {i} memory %", line=dict(dash="dot")))
            figs.append(("chart-gpu", "GPU utilisation and memory", layout(fig, "GPU", "percent")))

    if server_rows:
        depth: dict[float, float] = {}
        for r in server_rows:
            if r.get("metric") == "asrtk_queue_depth" and _num(r.get("t_s")) is not None and _num(r.get("value")) is not None:
                depth[float(r["t_s"])] = depth.get(float(r["t_s"]), 0.0) + float(r["value"])
        if depth:
            xs = sorted(depth)
            fig = go.Figure(go.Scatter(x=xs, y=[depth[x] for x in xs], mode="lines", name="queue depth"))
            figs.append(("chart-server-queue", "Server batching queue depth (all models)",
                         layout(fig, "Server queue depth", "items")))
    return figs


def render_html(summary: Row, timeseries_rows: Sequence[Row], telemetry_rows: Sequence[Row], *,
                latency_spectrum: Spectrum | None = None, server_rows: Sequence[Row] | None = None) -> str:
    """A self-contained HTML report: verdict header, charts (plotly JS inlined once), tables."""
    v = verdict(summary)
    title = f"asrtk bench: {_get(summary, 'scenario.name', '?')} — {summary.get('run_id', '?')}"
    badges = [
        _badge(f"SLO {v['slo']}", None if v["slo"] == "N/A" else v["slo"] == "PASS"),
        _badge(f"run {v['valid']}", None if v["valid"] == "UNKNOWN" else v["valid"] == "VALID"),
        _badge(v["complete"] + (f" ({v['incomplete_reason']})" if v["incomplete_reason"] else ""),
               v["complete"] == "COMPLETE"),
    ]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<div class="badges">{"".join(badges)}</div>',
    ]
    parts += [f'<div class="warning">warning: {html.escape(str(w))}</div>' for w in v["warnings"]]
    parts += [f'<div class="warning">note: {html.escape(str(n))}</div>' for n in v["notes"]]
    parts.append(_html_table(["", ""], _run_facts(summary), cls="facts"))
    tables = _tables(summary)
    # Headline numbers first, charts next, the detail tables after them.
    head_titles = {"SLO checks", "Latency (from intended start, warm-up excluded)", "Requests and throughput"}
    for t_title, header, rows in tables:
        if t_title in head_titles:
            parts += [f"<h2>{html.escape(t_title)}</h2>", _html_table(header, rows)]
    figs = _figures(summary, timeseries_rows, telemetry_rows, latency_spectrum, server_rows)
    if figs:
        parts.append("<h2>Charts</h2>")
        k = bucket_seconds(len(timeseries_rows))
        if k > 1:
            parts.append(f'<p class="note">Time charts show {k}-second buckets (latency and in-flight: the '
                         "bucket's worst second; rates and utilisation: its mean); the tables and files keep "
                         "every second.</p>")
    if figs:
        parts.append(plotjs.script_tag())
    for div_id, caption, fig in figs:
        parts.append(plotjs.figure_html(fig, div_id=div_id, config={"displaylogo": False, "responsive": True}))
    if not figs:
        parts.append('<p class="note">No time series were recorded for this run.</p>')
    for t_title, header, rows in tables:
        if t_title not in head_titles:
            parts += [f"<h2>{html.escape(t_title)}</h2>", _html_table(header, rows)]
    if latency_spectrum:
        parts += ["<h2>Latency percentile spectrum</h2>",
                  _html_table(["percentile", "latency"], _spectrum_rows(latency_spectrum))]
    parts.append('<p class="note">Latency is measured from each request\'s intended start time; percentiles '
                 'come from exact HDR histograms (3 significant digits). Generated by asrtk.</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# ----------------------------------------------------------------------------- writer


def write_reports(run_dir: Path) -> tuple[Path, Path]:
    """Read a run directory's files and (re)write its report.html and report.md."""
    from toolkit.results import FILES, latency_spectrum, read_csv, read_summary

    run_dir = Path(run_dir)
    summary = read_summary(run_dir)
    ts = read_csv(run_dir / FILES["timeseries"])
    tel = read_csv(run_dir / FILES["telemetry"])
    server = read_csv(run_dir / FILES["server_metrics"])
    spectrum = latency_spectrum(run_dir / FILES["latency_log"], warmup_s=_num(summary.get("warmup_s")) or 0.0)
    html_path = run_dir / FILES["report_html"]
    md_path = run_dir / FILES["report_md"]
    atomic.write_text(html_path, render_html(summary, ts, tel, latency_spectrum=spectrum, server_rows=server))
    atomic.write_text(md_path, render_markdown(summary, ts, tel, latency_spectrum=spectrum))
    return html_path, md_path
