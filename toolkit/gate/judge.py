"""The gate's verdict from run data: absolute thresholds and noise-aware comparison.

Input is :class:`RunData` (what ``toolkit.runs.gate`` loads from run directories), output a
:class:`~toolkit.gate.model.GateResult`. Runs that cannot be trusted (incomplete, disturbed
host, invalid load generator) are left out of the comparison while a trusted run remains on
their side; when none remains the verdict is ``inconclusive`` with the reason. Two sides that
were not measured alike (another scenario, load, seed or host size) are not compared at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from toolkit.gate import stats
from toolkit.gate.expr import FIGURES, Figure, Threshold, format_value, value_of
from toolkit.gate.model import Check, GateResult, RunRef, combine, exit_code


@dataclass
class RunData:
    """One run as the gate sees it."""

    summary: dict[str, Any]
    path: str
    latency: Any = None  # HdrHistogram (µs) of the measured window's successful requests
    cpu_s: list[float] = field(default_factory=list)  # per measured second: target CPU seconds
    ok: list[float] = field(default_factory=list)  # per measured second: successful requests
    git_commit: str | None = None
    git_branch: str | None = None

    @property
    def ref(self) -> RunRef:
        s = self.summary
        return RunRef(run_id=str(s.get("run_id")), path=self.path, scenario=(s.get("scenario") or {}).get("name"),
                      target=(s.get("target") or {}).get("url"), label=s.get("label"),
                      git_commit=self.git_commit, git_branch=self.git_branch,
                      disturbed=bool((s.get("host") or {}).get("disturbed")),
                      loadgen_valid=(s.get("loadgen") or {}).get("valid"))


def distrust(run: RunData) -> str | None:
    """Why a run's figures cannot be compared, or None."""
    s = run.summary
    rid = s.get("run_id")
    if not s.get("complete", True):
        return f"run {rid} is incomplete ({s.get('incomplete_reason') or 'interrupted'})"
    host = s.get("host") or {}
    if host.get("disturbed"):
        return (f"run {rid}: the host was disturbed ({host.get('interference_cpu_cores_mean') or 0:.2f} cores of other "
                f"work and CPU steal > {host.get('interference_threshold_cores') or 0:g})")
    if not (s.get("loadgen") or {}).get("valid", True):
        return f"run {rid}: the load generator was the bottleneck (loadgen.valid false)"
    if not (s.get("requests") or {}).get("ok"):
        return f"run {rid}: no request succeeded"
    return None


def _shape(s: dict[str, Any]) -> dict[str, Any]:
    load = s.get("load") or {}
    sc = s.get("scenario") or {}
    return {"scenario": sc.get("name"), "seed": sc.get("seed"), "mode": load.get("mode"),
            "stages": [(st.get("rate"), st.get("users")) for st in load.get("stages") or []],
            "cores": (s.get("host") or {}).get("cores")}


def unlike(current: Sequence[RunData], baseline: Sequence[RunData]) -> list[str]:
    """Why the two sides were not measured alike (empty: like for like)."""
    a, b = _shape(current[0].summary), _shape(baseline[0].summary)
    out = []
    names = {"scenario": "scenario", "seed": "seed", "mode": "load mode", "stages": "load (rate/users per stage)",
             "cores": "host cores"}
    for k, label in names.items():
        if a[k] != b[k] and a[k] is not None and b[k] is not None:
            out.append(f"not like for like: {label} {b[k]!r} in the baseline, {a[k]!r} now")
    return out


def _merged_latency(runs: Sequence[RunData]) -> Any:
    from toolkit.recorder import new_histogram

    h = new_histogram()
    for r in runs:
        if r.latency is not None:
            h.add(r.latency)
    return h


def _quantile(fig: Figure) -> float | None:
    name = fig.name
    if fig.key.startswith("latency_s.p"):
        return float(name[1:]) / 100.0
    return None


def side_estimate(runs: Sequence[RunData], fig: Figure, z: float) -> stats.Estimate:
    """A side's pooled estimate of a compared figure."""
    q = _quantile(fig)
    if q is not None:
        sampling = stats.quantile_estimate(_merged_latency(runs), q, z)
        return stats.pooled(sampling, [value_of(r.summary, fig) for r in runs])
    if fig.name == "cpu_per_request":
        num = [x for r in runs for x in r.cpu_s]
        den = [x for r in runs for x in r.ok]
        est = stats.ratio_estimate(num, den)
        if est.value is None:  # no per-second samples: the summaries' figure, no error
            vals = [value_of(r.summary, fig) for r in runs]
            vals = [v for v in vals if v is not None]
            return stats.Estimate(sum(vals) / len(vals) if vals else None, None, 0, len(runs))
        return stats.pooled(est, [value_of(r.summary, fig) for r in runs])
    raise ValueError(f"{fig.name} cannot be compared (only latency percentiles and cpu_per_request)")


COMPARABLE = tuple(n for n, f in FIGURES.items() if _quantile(f) is not None) + ("cpu_per_request",)


def threshold_check(runs: Sequence[RunData], t: Threshold) -> Check:
    """An absolute bound on the pooled current runs (the point estimate, as k6 judges)."""
    fig = t.figure
    q = _quantile(fig)
    if q is not None:
        h = _merged_latency(runs)
        measured = h.get_value_at_percentile(q * 100.0) / 1e6 if h.get_total_count() else None
    elif fig.name == "max":
        vals = [value_of(r.summary, fig) for r in runs]
        measured = max((v for v in vals if v is not None), default=None)
    else:  # rates and ratios: weighted by the runs' requests
        vals = [(value_of(r.summary, fig), (r.summary.get("requests") or {}).get("total") or 0) for r in runs]
        vals = [(v, w) for v, w in vals if v is not None]
        w = sum(x for _, x in vals)
        measured = (sum(v * x for v, x in vals) / w if w else vals[0][0]) if vals else None
    if measured is None:
        return Check(name=t.text, kind="threshold", figure=fig.key, verdict="fail", measured=None,
                     allowed=t.allowed, unit=fig.unit, message=f"{fig.name}: nothing was measured")
    ok = t.holds(measured)
    return Check(name=t.text, kind="threshold", figure=fig.key, verdict="pass" if ok else "fail", measured=measured,
                 allowed=t.allowed, unit=fig.unit,
                 message=f"{fig.name} {format_value(measured, fig.unit)} {'within' if ok else 'breaks'} {t.allowed}")


def compare_check(current: Sequence[RunData], baseline: Sequence[RunData], fig: Figure, max_regression: float,
                  z: float) -> Check:
    cur, base = side_estimate(current, fig, z), side_estimate(baseline, fig, z)
    chg, ci = stats.change(cur, base, z, fig.higher_is_worse)
    allowed = f"+{max_regression * 100:g}%"
    name = f"{fig.name} change"
    if chg is None:
        return Check(name=name, kind="compare", figure=fig.key, verdict="inconclusive", measured=cur.value,
                     allowed=allowed, unit=fig.unit, baseline=base.value,
                     message=f"{fig.name}: not measured on both sides")
    verdict = stats.verdict_of_change(ci, max_regression)
    ci_txt = f" (CI {ci[0] * 100:+.1f}%…{ci[1] * 100:+.1f}%)" if ci else " (no interval: too little data)"
    what = {"fail": f"a regression beyond {allowed}", "pass": f"within {allowed}",
            "inconclusive": f"the interval straddles {allowed}: measure more"}[verdict]
    return Check(name=name, kind="compare", figure=fig.key, verdict=verdict, measured=cur.value, allowed=allowed,
                 unit=fig.unit, baseline=base.value, change=chg, ci=ci,
                 message=(f"{fig.name} {format_value(base.value, fig.unit)} -> {format_value(cur.value, fig.unit)}: "
                          f"{chg * 100:+.1f}%{ci_txt}, {what}"))


def default_compare(current: Sequence[RunData]) -> list[Figure]:
    """The scenario's SLO percentile(s) (p95 when the SLO names none).

    CPU per request is compared when asked for (``--compare p95,cpu_per_request``): for a
    CPU-bound inference server it is the steadier figure, but for a light target its per-second
    samples are too coarse (10 ms ticks; a 0.3 ms-per-request test server gave intervals of
    +-17% over two 20 s runs) and would make most verdicts inconclusive."""
    figs = []
    for c in (current[0].summary.get("slo") or {}).get("checks", []):
        name = str(c.get("name", ""))
        if name.startswith("latency_p") and name.endswith("_s"):
            p = name[len("latency_"):-2]
            if p in FIGURES and FIGURES[p] not in figs:
                figs.append(FIGURES[p])
    return figs or [FIGURES["p95"]]


def judge(current: Sequence[RunData], baseline: Sequence[RunData] | None, *,
          thresholds: Sequence[Threshold] = (), compare: Sequence[Figure] | None = None,
          max_regression: float = 0.05, confidence: float = 0.95, mode: str = "compare",
          policy: str = "inconclusive", created: str = "", duration_s: float | None = None) -> GateResult:
    """The verdict over the current runs (and the baseline's, when given)."""
    z = stats.z_of(confidence)
    reasons: list[str] = []
    trusted_cur = [r for r in current if distrust(r) is None]
    reasons_cur = [d for r in current if (d := distrust(r))]
    if not trusted_cur:
        reasons += reasons_cur or ["no current run"]
    checks: list[Check] = []
    judged_cur = trusted_cur or list(current)
    for t in thresholds:
        checks.append(threshold_check(judged_cur, t) if judged_cur else
                      Check(t.text, "threshold", t.figure.key, "inconclusive", None, t.allowed, t.figure.unit))
    if baseline is not None:
        trusted_base = [r for r in baseline if distrust(r) is None]
        if not trusted_base:
            reasons += [d for r in baseline if (d := distrust(r))] or ["no baseline run"]
        elif trusted_cur:
            like = unlike(trusted_cur, trusted_base)
            reasons += like
            if not like:
                for fig in (compare if compare is not None else default_compare(trusted_cur)):
                    checks.append(compare_check(trusted_cur, trusted_base, fig, max_regression, z))
    verdict = combine(checks, reasons)
    scenario = (current[0].summary.get("scenario") or {}).get("name") if current else None
    return GateResult(verdict=verdict, exit_code=exit_code(verdict, policy), mode=mode, checks=checks,
                      reasons=reasons, runs=[r.ref for r in current],
                      baselines=[r.ref for r in baseline or []], max_regression=max_regression if baseline else None,
                      confidence=confidence, inconclusive_policy=policy, created=created, duration_s=duration_s,
                      scenario=scenario)


def measure_more(result: GateResult) -> bool:
    """Would another run help? When the verdict is inconclusive because an interval straddles its
    tolerance or a run could not be trusted; not when the two sides were not measured alike."""
    return result.verdict == "inconclusive" and not any(r.startswith("not like for like") for r in result.reasons)
