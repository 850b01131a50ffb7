"""Reports for sweeps and plans: Markdown and self-contained HTML (plotly JS inlined once).

Pure: documents in, strings out.
"""

from __future__ import annotations

import html
import math
import re
from typing import Any


def _fmt(v: Any, nd: int = 3, unit: str = "", scale: float = 1.0) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)):
        if isinstance(v, float) and not math.isfinite(v):
            return "∞"
        return f"{v * scale:.{nd}g}{unit}"
    return str(v)


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.2%}"


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _html_table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}.note{color:#555}.warn{color:#a60}"""


def _bold(text: str) -> str:
    """Escape, then turn Markdown **bold** into <b>."""
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(text))


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>{body}</body></html>\n")


# -- capacity report -------------------------------------------------------------------------------

def _step_rows(doc: dict) -> list[list[str]]:
    rows = []
    for s in doc.get("steps", []):
        lat = s.get("latency_s") or {}
        gpu = s.get("gpu") or {}
        srv = s.get("server") or {}
        rows.append([
            str(s.get("index")), str(s.get("phase", "")), _fmt(s.get("load")), _fmt(s.get("achieved_rps")),
            _fmt(s.get("concurrency")), _fmt(lat.get("p50"), unit="s"), _fmt(lat.get("p95"), unit="s"),
            _fmt(lat.get("p99"), unit="s"), _pct(s.get("error_rate")), _fmt(gpu.get("util_mean_ratio")),
            _fmt(srv.get("queue_depth_max")), _fmt(srv.get("batch_size_mean")),
            _fmt((s.get("host") or {}).get("target_cpu_s_per_request"), scale=1000, unit=" ms"),
            _fmt((s.get("host") or {}).get("interference_cpu_cores")),
            (f"disturbed, not counted ({s.get('reason', '')})" if s.get("final") == "disturbed"
             else f"{s.get('final', '')} ({s.get('reason', '')})"),
        ])
    return rows


_STEP_HEADERS = ["step", "phase", "load", "achieved rps", "concurrency", "p50", "p95", "p99", "errors",
                 "GPU util", "queue max", "batch mean", "target CPU/req", "other work (cores)", "verdict"]


def _workers_rows(doc: dict) -> list[list[str]]:
    return [[str(w.get("workers")), _fmt(w.get("max_rps_at_slo")), _fmt(w.get("p95_s"), unit="s"),
             _pct(w.get("error_rate")), str(w.get("status", ""))] for w in doc.get("workers") or []]


def _headline(doc: dict) -> list[str]:
    res = doc.get("result") or {}
    slo = doc.get("slo") or {}
    ci = res.get("ci_rps") or [None, None]
    lines = [
        f"Scenario **{(doc.get('scenario') or {}).get('name', '?')}**, target "
        f"{(doc.get('target') or {}).get('url') or 'embedded reference server'}, mode {doc.get('mode')}.",
        f"SLO: p{float(slo.get('percentile', 0.95)) * 100:g} <= {_fmt(slo.get('latency_s'))}s, "
        f"errors <= {_pct(slo.get('max_error_rate'))}.",
        f"**Max throughput at the SLO: {_fmt(res.get('max_rps_at_slo'))} rps** "
        f"(95% CI {_fmt(ci[0])} – {_fmt(ci[1]) if ci[1] is not None else 'not bracketed'}), status "
        f"{res.get('status')}: {res.get('note', '')}.",
    ]
    usl = doc.get("usl")
    if usl:
        lines.append(
            f"USL fit: sigma {usl['sigma']:.4g}, kappa {usl['kappa']:.4g}, lambda {usl['lambda']:.4g} rps, "
            f"R² {usl['r_squared']:.3f}, peak concurrency {_fmt(usl.get('peak_concurrency'))}"
            f" ({usl['points']} points)."
        )
        lines += [f"Warning: {w}" for w in usl.get("warnings") or []]
    elif doc.get("usl_error"):
        lines.append(f"No USL fit: {doc['usl_error']}.")
    if doc.get("best_workers") is not None:
        lines.append(f"Best worker count per node: **{doc['best_workers']}**.")
    return lines


def capacity_markdown(doc: dict) -> str:
    parts = [f"# Capacity sweep {doc.get('sweep_id', '')}", ""]
    parts += [f"- {line}" for line in _headline(doc)]
    if doc.get("workers"):
        parts += ["", "## Workers", "", _md_table(["workers", "QPS at SLO", "p95", "error rate", "status"],
                                                   _workers_rows(doc))]
    parts += ["", "## Steps", "", _md_table(_STEP_HEADERS, _step_rows(doc)), ""]
    return "\n".join(parts)


def _figures(doc: dict) -> list[Any]:
    import plotly.graph_objects as go

    steps = [s for s in doc.get("steps", []) if s.get("final") not in ("noisy", "disturbed")]
    xs = [s["achieved_rps"] for s in steps]
    figs = []
    f1 = go.Figure()
    for key in ("p50", "p95", "p99"):
        f1.add_trace(go.Scatter(x=xs, y=[(s.get("latency_s") or {}).get(key) for s in steps], mode="markers+lines",
                                name=key, text=[f"step {s['index']}: {s.get('final')}" for s in steps]))
    slo = doc.get("slo") or {}
    if slo.get("latency_s"):
        f1.add_hline(y=slo["latency_s"], line_dash="dash", annotation_text="SLO")
    f1.update_layout(title="Latency vs throughput", xaxis_title="achieved rps", yaxis_title="latency (s)")
    figs.append(f1)
    pts = sorted((s["concurrency"], s["achieved_rps"]) for s in steps if s.get("concurrency") is not None)
    if pts:
        f2 = go.Figure()
        f2.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="markers", name="measured"))
        usl = doc.get("usl")
        if usl:
            from toolkit.capacity.usl import UslFit

            fit = UslFit.from_dict(usl)
            n_max = max(p[0] for p in pts) * 1.5
            if fit.peak_concurrency:
                n_max = max(n_max, min(fit.peak_concurrency * 1.2, n_max * 4))
            curve = fit.curve(n_max)
            f2.add_trace(go.Scatter(x=[c[0] for c in curve], y=[c[1] for c in curve], mode="lines",
                                    name=f"USL fit (R²={fit.r_squared:.3f})"))
        f2.update_layout(title="Throughput vs concurrency", xaxis_title="concurrency (requests in flight)",
                         yaxis_title="rps")
        figs.append(f2)
    return figs


def _figs_html(figs: list[Any]) -> str:
    from toolkit import plotjs

    if not figs:
        return ""
    return plotjs.script_tag() + "".join(plotjs.figure_html(f) for f in figs)


def capacity_html(doc: dict) -> str:
    body = [f"<h1>Capacity sweep {html.escape(str(doc.get('sweep_id', '')))}</h1><ul>"]
    body += [f"<li>{_bold(line)}</li>" for line in _headline(doc)]
    body.append("</ul>")
    if doc.get("workers"):
        body += ["<h2>Workers</h2>", _html_table(["workers", "QPS at SLO", "p95", "error rate", "status"],
                                                 _workers_rows(doc))]
    body.append(_figs_html(_figures(doc)))
    body += ["<h2>Steps</h2>", _html_table(_STEP_HEADERS, _step_rows(doc))]
    return _page(f"asrtk capacity {doc.get('sweep_id', '')}", "".join(body))


# -- plan ------------------------------------------------------------------------------------------

def _plan_tables(doc: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    tables = []
    rows = []
    for nt in doc.get("node_types", []):
        for w in nt.get("by_workers") or []:
            rows.append([nt["name"], _fmt(w.get("workers")), _fmt(w.get("capacity_rps")),
                         _fmt(w.get("p95_s"), unit="s"), _pct(w.get("error_rate"))])
    tables.append(("Workers vs QPS at the SLO", ["node type", "workers", "QPS at SLO", "p95 there", "error rate"],
                   rows))
    rec = doc.get("recommended") or {}
    exp = doc.get("expected") or {}
    nt = next((n for n in doc.get("node_types", []) if n["name"] == rec.get("node_type")), None)
    cap = nt["capacity_rps"] if nt else None
    active = rec.get("active_nodes") or 0
    one = [
        ["capacity at SLO (rps)", _fmt(cap), _fmt(cap * active if cap else None)],
        ["planned load (rps)", _fmt(exp.get("per_node_rps")), _fmt((doc.get("target") or {}).get("qps"))],
        ["utilisation of capacity", _pct(exp.get("utilization")), _pct(exp.get("utilization"))],
        ["p95 measured near that load", _fmt(exp.get("p95_s_measured"), unit="s"), "–"],
        [f"p95 model ({exp.get('model', '')})", _fmt(exp.get("p95_s_model"), unit="s"), "–"],
        ["CPU per request, as swept (plan validate checks it)",
         _fmt(exp.get("target_cpu_s_per_request"), scale=1000, unit=" ms"), "–"],
        ["other work and CPU steal on the load host, as swept (cores)",
         _fmt(exp.get("sweep_interference_cpu_cores")), "–"],
        ["nodes (active + backup)", "1", f"{rec.get('nodes')} ({active} + {rec.get('backup_nodes')})"],
        ["cost per hour", _fmt(nt.get("cost_per_hour") if nt else None), _fmt(rec.get("cost_per_hour"))],
    ]
    tables.append(("One node vs the cluster", ["", "one node", "cluster"], one))
    deg = doc.get("degraded") or {}
    opd = deg.get("one_primary_down") or {}
    tables.append(("With nodes down", ["case", "capacity (rps)", "per-node load (rps)", "meets SLO"], [
        [f"{deg.get('nodes_lost')} node(s) lost, backups in", _fmt(deg.get("capacity_rps")), "–",
         _fmt(deg.get("meets_slo"))],
        ["1 primary down, no backup yet", _fmt(opd.get("capacity_rps")), _fmt(opd.get("per_node_rps")),
         _fmt(opd.get("meets_slo"))],
    ]))
    alts = [[a["node_type"], str(a["nodes"]), _fmt(a.get("cost_per_hour")), _fmt(a.get("meets_slo")),
             _fmt(a.get("within_budget"))] for a in doc.get("alternatives") or []]
    if alts:
        tables.append(("Alternatives", ["node type", "nodes", "cost/h", "meets SLO", "within budget"], alts))
    fleet = [[f["name"], f["node_type"], f.get("address") or "not assigned (--hosts)", str(f["weight"]), _fmt(f["backup"])]
             for f in doc.get("fleet") or []]
    tables.append(("Fleet (nginx upstream)", ["name", "node type", "address", "weight", "backup"], fleet))
    return tables


def _plan_headline(doc: dict) -> list[str]:
    rec = doc.get("recommended") or {}
    slo = doc.get("slo") or {}
    tgt = doc.get("target") or {}
    lines = [
        f"Target {_fmt(tgt.get('qps'))} rps of {tgt.get('scenario') or 'the measured workload'}, SLO "
        f"p{float(slo.get('percentile', 0.95)) * 100:g} <= {_fmt(slo.get('latency_s'))}s, headroom "
        f"{_fmt(doc.get('headroom'))}, redundancy N+{doc.get('redundancy')}.",
        f"**Recommended: {rec.get('nodes')} x {rec.get('node_type')}** ({rec.get('active_nodes')} active + "
        f"{rec.get('backup_nodes')} backup), {_fmt(rec.get('workers_per_node'))} workers per node"
        + (f", {_fmt(rec.get('cost_per_hour'))}/h" if rec.get("cost_per_hour") is not None else "")
        + f" (ranked by {doc.get('ranking', '')}).",
        "The p95 model figure is a queueing model (Erlang C with an Allen-Cunneen correction), not a measurement.",
    ]
    lines += [f"Note: {n}" for n in doc.get("notes") or []]
    lines += [f"Not feasible: {i['node_type']}: {i['reason']}" for i in doc.get("infeasible") or []]
    return lines


def plan_markdown(doc: dict) -> str:
    parts = ["# Fleet plan", ""] + [f"- {line}" for line in _plan_headline(doc)]
    for title, headers, rows in _plan_tables(doc):
        parts += ["", f"## {title}", "", _md_table(headers, rows)]
    parts += ["", "## Assumptions", ""] + [f"- {a}" for a in doc.get("assumptions") or []] + [""]
    return "\n".join(parts)


def plan_html(doc: dict) -> str:
    body = ["<h1>Fleet plan</h1><ul>"]
    body += [f"<li>{_bold(line)}</li>" for line in _plan_headline(doc)]
    body.append("</ul>")
    for title, headers, rows in _plan_tables(doc):
        body += [f"<h2>{html.escape(title)}</h2>", _html_table(headers, rows)]
    body += ["<h2>Assumptions</h2><ul>"] + [f"<li>{html.escape(a)}</li>" for a in doc.get("assumptions") or []]
    body.append("</ul>")
    return _page("asrtk plan", "".join(body))
