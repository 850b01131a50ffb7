"""What a drill run writes, rendered from data: ``summary.json`` (``asrtk.drill/v1``), the
``--json`` document, ``timeline.csv`` / ``events.csv`` rows, ``report.md`` and ``report.html``
(a latency / error timeline per drill with the injection moments marked, inline SVG, no script).

Pure: dicts and records in, dicts and text out (the orchestrator writes the files).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from toolkit.drills import judge as J
from toolkit.drills.model import SCHEMA, DrillResult, DrillRun, Slo

FILES = {
    "summary": "summary.json",
    "timeline": "timeline.csv",
    "events": "events.csv",
    "report_html": "report.html",
    "report_md": "report.md",
    "fleet": "fleet/",
}
# one row per drill and second of intended start; p_slo_s is the SLO's percentile (p95 for mobile)
# of the successful latencies, max_s the slowest; bad: an unexpected error or p_slo_s above the SLO
TIMELINE_COLUMNS = ["drill", "t_s", "requests", "ok", "errors", "refused", "p_slo_s", "max_s", "bad",
                    "error_classes", "events"]
EVENT_COLUMNS = ["drill", "t_s", "action", "replica", "note"]
MARKED = ("kill", "sigterm", "start", "ready", "sigstop", "sigcont", "overload_start", "overload_end", "hook",
          "hook_end", "routed")


def timeline_rows(runs: Sequence[DrillRun], slo: Slo) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for run in runs:
        marks: dict[int, list[str]] = {}
        for e in run.events:
            if e.action in MARKED:
                marks.setdefault(int(e.t_s // J.BUCKET_S), []).append(f"{e.action} {e.replica}".strip())
        for r in J.seconds(J.in_window(run), slo, J.expected_refusal(run, slo)):
            t = int(r["t_s"] // J.BUCKET_S)
            rows.append({"drill": run.name, "t_s": r["t_s"], "requests": r["requests"], "ok": r["ok"],
                         "errors": r["errors"], "refused": r["refused"], "p_slo_s": r["p_slo_s"], "max_s": r["max_s"],
                         "bad": int(J.is_bad(r, slo)),
                         "error_classes": ";".join(f"{k}:{v}" for k, v in sorted(r["classes"].items())),
                         "events": "; ".join(marks.get(t, []))})
    return rows


def event_rows(runs: Sequence[DrillRun]) -> list[dict[str, Any]]:
    return [{"drill": run.name, **asdict(e)} for run in runs for e in run.events]


def build_summary(*, asrtk_version: str, created: datetime, complete: bool, incomplete_reason: str | None,
                  scenario: str, target: dict[str, Any], capacity_rps: float | None, capacity_source: str,
                  calibration: dict[str, Any] | None, base_rps: float, facts: J.Facts, results: list[DrillResult],
                  runs: list[DrillRun], wall_s: float, exit_code: int) -> dict[str, Any]:
    """``summary.json``: schema ``asrtk.drill/v1`` (docs/drill.md)."""
    by_name = {r.name: r for r in runs}
    drills = []
    for res in results:
        d = res.to_json()
        run = by_name.get(res.name)
        if run is not None:
            d["window_s"] = [round(run.window[0], 3), round(run.window[1], 3)]
            d["events"] = [asdict(e) for e in run.events]
        drills.append(d)
    return {
        "schema": SCHEMA, "asrtk_version": asrtk_version, "created": created.isoformat(), "complete": complete,
        "incomplete_reason": incomplete_reason, "scenario": scenario, "target": target,
        "slo": {"percentile": facts.slo.percentile, "latency_s": facts.slo.latency_s},
        "capacity_rps": capacity_rps, "capacity_source": capacity_source, "calibration": calibration,
        "base_rps": base_rps,
        "facts": {"nginx": asdict(facts.proxy) if facts.proxy is not None else None,
                  "server": asdict(facts.server) if facts.server is not None else None,
                  "nginx_access_log": facts.proxy_log},
        "drills": drills,
        "broken": [p.line(r.name) for r in results for p in r.promises if p.held is False],
        "unknown": [p.line(r.name) for r in results for p in r.promises if p.held is None],
        "exit_code": exit_code, "wall_s": round(wall_s, 1), "files": FILES,
    }


def json_document(summary: dict[str, Any]) -> dict[str, Any]:
    """``--json FILE``: {"drills": [{name, passed, errors, error_bound, recovery_s, recovery_bound_s, detail,
    loadgen, host}]}."""
    keys = ("name", "passed", "errors", "error_bound", "recovery_s", "recovery_bound_s", "detail", "loadgen", "host")
    return {"drills": [{k: d.get(k) for k in keys} for d in summary.get("drills", [])],
            "complete": summary.get("complete"), "exit_code": summary.get("exit_code"),
            "broken": summary.get("broken", [])}


# ----------------------------------------------------------------------------- text


def _v(x: Any, unit: str = "") -> str:
    if x is None:
        return "unknown"
    if isinstance(x, float):
        return f"{x:.2f}{unit}"
    return f"{x}{unit}"


def _state(passed: bool | None) -> str:
    return {True: "held", False: "BROKEN", None: "partly unknown"}[passed]


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    esc = [[str(c).replace("|", "\\|") for c in r] for r in rows]
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                     + ["| " + " | ".join(r) + " |" for r in esc])


def render_markdown(summary: dict[str, Any], rows: Sequence[dict[str, Any]]) -> str:
    t = summary.get("target") or {}
    out = [f"# asrtk drill: {summary.get('scenario')} against "
           f"{'the embedded fleet' if t.get('embedded') else t.get('url')}", ""]
    state = "complete" if summary.get("complete") else f"INCOMPLETE: {summary.get('incomplete_reason')}"
    out.append(f"- created {summary.get('created')}, {state}, wall time {summary.get('wall_s')} s, "
               f"exit code {summary.get('exit_code')}")
    slo = summary.get("slo") or {}
    out.append(f"- SLO p{float(slo.get('percentile', 0)) * 100:g} <= {slo.get('latency_s')} s; base load "
               f"{summary.get('base_rps')} req/s mean; capacity {_v(summary.get('capacity_rps'), ' req/s')}"
               + (f" ({summary.get('capacity_source')})" if summary.get("capacity_source") else ""))
    fleet = t.get("fleet")
    if fleet:
        names = ", ".join(f"{r['name']}{' (backup)' if r['backup'] else ''} {r['address']}" for r in fleet["replicas"])
        out.append(f"- fleet: {names}; nginx config from `{fleet.get('generate_command')}`")
    out.append("")
    out += ["## Verdicts", "", _md_table(
        ["drill", "verdict", "errors", "bound", "recovery", "bound", "wall"],
        [[d["name"], _state(d.get("passed")), _v(d.get("errors")), _v(d.get("error_bound")),
          _v(d.get("recovery_s"), " s"), _v(d.get("recovery_bound_s"), " s"), _v(d.get("wall_s"), " s")]
         for d in summary.get("drills", [])]), ""]
    for d in summary.get("drills", []):
        out += [f"### {d['name']}: {_state(d.get('passed'))}", "", d.get("detail", ""), "",
                *[f"**Load generator INVALID:** {w}\n" for w in (d.get("loadgen") or {}).get("warnings", [])],
                *[f"**DISTURBED host:** {w}\n" for w in (d.get("host") or {}).get("warnings", [])],
                _md_table(["promise", "state", "measured", "bound", "why"],
                          [[p["text"], {True: "held", False: "BROKEN", None: "unknown"}[p["held"]], p["measured"],
                            p["bound"], p["why"]] for p in d.get("promises", [])]), ""]
        ev = [r for r in rows if r["drill"] == d["name"] and (r["bad"] or r["events"])]
        if ev:
            out += [_md_table(["t (s)", "requests", "errors", "refused", "p_slo", "events", "error classes"],
                              [[f"{r['t_s']:g}", str(r["requests"]), str(r["errors"]), str(r["refused"]),
                                _v(r["p_slo_s"], " s"), r["events"], r["error_classes"]] for r in ev]), ""]
    if summary.get("broken"):
        out += ["## What broke", ""] + [f"- {line}" for line in summary["broken"]] + [""]
    return "\n".join(out).rstrip() + "\n"


# ----------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1200px;color:#222}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0;font-size:.92em}
td,th{border:1px solid #ddd;padding:4px 10px;text-align:left}
th{background:#f5f5f5} .held{color:#2e7d32;font-weight:600} .broken{color:#c62828;font-weight:700}
.unknown{color:#757575} .note{color:#666;font-size:.9em} svg{background:#fff;border:1px solid #eee}
"""


def _svg(drill: str, rows: Sequence[dict[str, Any]], events: Sequence[dict[str, Any]], slo_s: float) -> str:
    """Latency (SLO percentile and max per second) over the drill, errors and refusals as bars,
    the SLO as a dashed line, every injection as a labelled vertical line."""
    w, h, left, right, top, bottom = 1100, 300, 60, 60, 20, 40
    rs = [r for r in rows if r["drill"] == drill]
    if not rs:
        return ""
    t_max = max([r["t_s"] + 1 for r in rs] + [e["t_s"] for e in events] + [1.0])
    lat = [r["max_s"] for r in rs if r["max_s"] is not None] + [slo_s * 1.5]
    y_max = min(max(lat), max(slo_s * 6, 1e-3)) * 1.05
    n_max = max([r["errors"] + r["refused"] for r in rs] + [1])
    pw, ph = w - left - right, h - top - bottom

    def x(t: float) -> float:
        return left + pw * t / t_max

    def y(v: float) -> float:
        return top + ph * (1 - min(v, y_max) / y_max)

    def yc(n: float) -> float:
        return top + ph * (1 - n / n_max)

    parts = [f'<svg viewBox="0 0 {w} {h}" width="100%" role="img" aria-label="{html.escape(drill)} timeline">']
    for r in rs:
        bw = max(1.0, pw / t_max * 0.8)
        if r["errors"]:
            tip = f'{r["t_s"]:g} s: {r["errors"]} errors {r["error_classes"]}'
            parts.append(f'<rect x="{x(r["t_s"]):.1f}" y="{yc(r["errors"]):.1f}" width="{bw:.1f}" '
                         f'height="{top + ph - yc(r["errors"]):.1f}" fill="#c62828" opacity=".55">'
                         f'<title>{html.escape(tip)}</title></rect>')
        if r["refused"]:
            y0 = yc(r["errors"] + r["refused"])
            parts.append(f'<rect x="{x(r["t_s"]):.1f}" y="{y0:.1f}" width="{bw:.1f}" height="{yc(r["errors"]) - y0:.1f}" '
                         f'fill="#ef6c00" opacity=".45"><title>{r["t_s"]:g} s: {r["refused"]} refused</title></rect>')
    for key, color, dash in (("p_slo_s", "#1565c0", ""), ("max_s", "#90a4ae", ' stroke-dasharray="4 3"')):
        pts = [f"{x(r['t_s'] + 0.5):.1f},{y(r[key]):.1f}" for r in rs if r[key] is not None]
        if pts:
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.8"{dash} points="{" ".join(pts)}"/>')
    parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(slo_s):.1f}" y2="{y(slo_s):.1f}" stroke="#c62828" '
                 f'stroke-dasharray="6 4"/><text x="{left + pw + 4}" y="{y(slo_s) + 4:.1f}" font-size="11" '
                 f'fill="#c62828">SLO</text>')
    for i, e in enumerate(events):
        if e["action"] not in MARKED:
            continue
        xe = x(e["t_s"])
        label = html.escape(f"{e['action']} {e['replica']}".strip())
        parts.append(f'<line x1="{xe:.1f}" x2="{xe:.1f}" y1="{top}" y2="{top + ph}" stroke="#6a1b9a" '
                     f'stroke-dasharray="3 3"><title>{e["t_s"]:.2f} s {label} {html.escape(e.get("note", ""))}</title></line>'
                     f'<text x="{xe + 2:.1f}" y="{top + 10 + 11 * (i % 4)}" font-size="10" fill="#6a1b9a">{label}</text>')
    parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" stroke="#999"/>'
                 f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + ph}" stroke="#999"/>')
    for k in range(6):
        v = y_max * k / 5
        parts.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" font-size="10" text-anchor="end">{v:.2g} s</text>')
        tv = t_max * k / 5
        parts.append(f'<text x="{x(tv):.1f}" y="{top + ph + 14}" font-size="10" text-anchor="middle">{tv:.0f} s</text>')
    parts.append(f'<text x="{left + pw + 4}" y="{top + 10}" font-size="10" fill="#c62828">errors (max {n_max})</text>')
    parts.append(f'<text x="{left + pw / 2:.0f}" y="{h - 6}" font-size="11" text-anchor="middle">seconds since the '
                 f'drill\'s load started (requests by intended start); blue: p-SLO per second, grey: max, '
                 f'bars: errors (red) and refusals (orange)</text></svg>')
    return "".join(parts)


def render_html(summary: dict[str, Any], rows: Sequence[dict[str, Any]]) -> str:
    e = html.escape
    slo = summary.get("slo") or {}
    slo_s = float(slo.get("latency_s") or 1.0)
    t = summary.get("target") or {}
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>asrtk drill</title>",
           f"<style>{_CSS}</style></head><body>",
           f"<h1>asrtk drill: {e(str(summary.get('scenario')))} against "
           f"{'the embedded fleet' if t.get('embedded') else e(str(t.get('url')))}</h1>",
           f"<p class='note'>created {e(str(summary.get('created')))}; "
           f"{'complete' if summary.get('complete') else 'INCOMPLETE: ' + e(str(summary.get('incomplete_reason')))}; "
           f"wall time {summary.get('wall_s')} s; exit code {summary.get('exit_code')}; SLO p"
           f"{float(slo.get('percentile', 0)) * 100:g} &lt;= {slo_s:g} s; base load {summary.get('base_rps')} req/s; "
           f"capacity {e(_v(summary.get('capacity_rps'), ' req/s'))} {e(str(summary.get('capacity_source') or ''))}</p>"]
    fleet = t.get("fleet")
    if fleet:
        out.append(f"<p class='note'>nginx config: <code>{e(str(fleet.get('generate_command')))}</code></p>")
    out.append("<h2>Verdicts</h2><table><tr><th>drill</th><th>verdict</th><th>errors</th><th>bound</th>"
               "<th>recovery</th><th>bound</th><th>wall</th></tr>")
    for d in summary.get("drills", []):
        cls = {True: "held", False: "broken", None: "unknown"}[d.get("passed")]
        out.append(f"<tr><td>{e(d['name'])}</td><td class='{cls}'>{_state(d.get('passed'))}</td>"
                   f"<td>{_v(d.get('errors'))}</td><td>{_v(d.get('error_bound'))}</td>"
                   f"<td>{_v(d.get('recovery_s'), ' s')}</td><td>{_v(d.get('recovery_bound_s'), ' s')}</td>"
                   f"<td>{_v(d.get('wall_s'), ' s')}</td></tr>")
    out.append("</table>")
    if summary.get("broken"):
        out.append("<h2>What broke</h2><ul>" + "".join(f"<li>{e(x)}</li>" for x in summary["broken"]) + "</ul>")
    for d in summary.get("drills", []):
        out.append(f"<h2>{e(d['name'])}: {_state(d.get('passed'))}</h2><p>{e(d.get('detail', ''))}</p>")
        out += [f"<p><b>Load generator INVALID:</b> {e(w)}</p>" for w in (d.get("loadgen") or {}).get("warnings", [])]
        out += [f"<p><b>DISTURBED host:</b> {e(w)}</p>" for w in (d.get("host") or {}).get("warnings", [])]
        out.append(_svg(d["name"], rows, d.get("events", []), slo_s))
        out.append("<table><tr><th>promise</th><th>state</th><th>measured</th><th>bound</th><th>why</th></tr>")
        for p in d.get("promises", []):
            cls = {True: "held", False: "broken", None: "unknown"}[p["held"]]
            out.append(f"<tr><td>{e(p['text'])}</td><td class='{cls}'>{cls.upper() if cls == 'broken' else cls}</td>"
                       f"<td>{e(p['measured'])}</td><td>{e(p['bound'])}</td><td>{e(p['why'])}</td></tr>")
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
