"""The drills' promises, judged on a recorded timeline. Pure: :class:`DrillRun` in, :class:`DrillResult` out.

Every bound is derived from the config that was running (nginx's ``max_fails``,
``fail_timeout``, ``proxy_read_timeout``, ``proxy_next_upstream[_tries]``; the servers'
``--memory-budget-mb``) and says so; a bound that needs the fleet's internals (nginx's log,
the replicas' memory) is ``None`` on a remote target: reported as unknown, never guessed.

Conventions:

* requests are bucketed by the second of their *intended* start (what a client arriving then
  got); a second is *bad* when a request intended in it failed unexpectedly or the percentile
  of its successful latencies is above the SLO. ``recovery_s`` is the time from the injection
  to the end of the last bad second (0 when none);
* nginx's passive health check is modelled as nginx implements it: a server is skipped once
  ``max_fails`` attempts on it failed, for ``fail_timeout`` after the last failure, counted on
  nginx's 1 s clock (so up to ``fail_timeout`` + 1 s).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from toolkit.drills.model import (Attempt, ClientRecord, DrillResult, DrillRun, Event, Promise, ProxyFacts,
                                  ServerFacts, Slo)

TOL_S = 0.02  # the drill's clock vs nginx's millisecond timestamps
BUCKET_S = 1.0  # recovery is measured in whole seconds of intended start
NGINX_CLOCK_S = 1.0  # nginx checks fail_timeout against a clock in whole seconds
REFUSALS = ("http_429", "http_503")  # load shedding: what the overload drill expects
RSS_BUDGET_FACTOR = 1.5  # docs/server.md, "Memory admission": growth <= 1.5 x --memory-budget-mb


@dataclass(frozen=True)
class Facts:
    """What the bounds are derived from: the SLO always; nginx's config and the servers' flags
    when known (the embedded fleet, or ``--nginx-conf`` for a remote target)."""

    slo: Slo
    proxy: ProxyFacts | None = None
    server: ServerFacts | None = None
    proxy_log: bool = False  # nginx's access log was read (the embedded fleet)


# ----------------------------------------------------------------------------- helpers


def in_window(run: DrillRun) -> list[ClientRecord]:
    lo, hi = run.window
    return [r for r in run.requests if lo <= r.intended_s < hi]


def nearest_rank(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (``p`` in 0-1) of ``values``; None when empty."""
    if not values:
        return None
    xs = sorted(values)
    return xs[max(0, min(len(xs) - 1, math.ceil(p * len(xs) - 1e-9) - 1))]


def seconds(records: Iterable[ClientRecord], slo: Slo,
            expected: Callable[[ClientRecord], bool] = lambda r: False) -> list[dict]:
    """One row per second of intended start: requests, ok, unexpected errors, expected refusals,
    the SLO percentile of successful latencies, the slowest, the error classes."""
    by: dict[int, list[ClientRecord]] = {}
    for r in records:
        by.setdefault(int(math.floor(r.intended_s / BUCKET_S)), []).append(r)
    rows = []
    for t in range(min(by, default=0), max(by, default=-1) + 1):
        rs = by.get(t, [])
        ok = [r.latency_s for r in rs if r.ok]
        errs = [r for r in rs if not r.ok and not expected(r)]
        rows.append({
            "t_s": t * BUCKET_S, "requests": len(rs), "ok": len(ok), "errors": len(errs),
            "refused": sum(1 for r in rs if not r.ok and expected(r)),
            "p_slo_s": nearest_rank(ok, slo.percentile), "max_s": max(ok) if ok else None,
            "classes": dict(Counter(r.error_class or "other" for r in errs)),
        })
    return rows


def is_bad(row: dict, slo: Slo) -> bool:
    return row["errors"] > 0 or (row["p_slo_s"] is not None and row["p_slo_s"] > slo.latency_s)


def recovery_s(rows: list[dict], slo: Slo, since_s: float, until_s: float = math.inf) -> float:
    """From ``since_s`` to the end of the last bad second in ``[since_s, until_s)``; 0 when none."""
    last = None
    for row in rows:
        start = row["t_s"]
        if start + BUCKET_S <= since_s or start >= until_s:
            continue
        if is_bad(row, slo):
            last = start + BUCKET_S
    return 0.0 if last is None else max(0.0, last - since_s)


def attempts_on(run: DrillRun, address: str) -> list[Attempt]:
    assert run.proxy is not None
    return sorted((a for p in run.proxy for a in p.attempts if a.address == address), key=lambda a: a.start_s)


def inflight_at(run: DrillRun, address: str, t_s: float) -> int:
    """Attempts on ``address`` in progress at ``t_s`` (from nginx's log)."""
    return sum(1 for a in attempts_on(run, address) if a.start_s <= t_s + TOL_S and a.end_s >= t_s - TOL_S)


def _failed(a: Attempt) -> bool:
    return a.status is None or a.status in (502, 504)


def ejection(attempts: list[Attempt], since_s: float, max_fails: int) -> float | None:
    """When nginx marked the server failed: the end of the ``max_fails``-th failed attempt after
    ``since_s`` (None: never, e.g. passive checks off with ``max_fails=0``)."""
    if max_fails <= 0:
        return None
    fails = sorted(a.end_s for a in attempts if a.end_s >= since_s - TOL_S and _failed(a))
    return fails[max_fails - 1] if len(fails) >= max_fails else None


def pickup(attempts: list[Attempt], ready_s: float) -> float | None:
    """Start of the first successful attempt after ``ready_s`` (nginx routes to the server again)."""
    return next((a.start_s for a in attempts if a.start_s >= ready_s - TOL_S and a.status == 200), None)


def retry_allowance(proxy: ProxyFacts, dead: int, down_s: float) -> tuple[int, str]:
    """Client errors nginx's retry policy lets through while ``dead`` servers refuse connections:
    a request fails only when every try lands on a dead server, which stops once each has
    failed ``max_fails`` times (and then once per ``fail_timeout`` while they stay down)."""
    n = len(proxy.servers)
    tries = min(proxy.tries or n, n)
    if tries > dead:
        return 0, f"proxy_next_upstream_tries {proxy.tries or 'unlimited'} reaches a live server past {dead} dead"
    if proxy.max_fails <= 0:
        return 0, "no passive health check (max_fails=0): nothing bounds the failed tries"
    windows = int(down_s // proxy.fail_timeout_s)
    first = math.ceil(proxy.max_fails * dead / tries)
    later = windows * math.ceil(dead / tries)
    return first + later, (f"{dead} dead of {n} servers with proxy_next_upstream_tries {tries}: "
                           f"ceil(max_fails {proxy.max_fails} x {dead} / {tries}) = {first}"
                           + (f" + {later} probe(s) after fail_timeout" if later else ""))


def _fmt_s(v: float | None) -> str:
    return "never" if v is None else f"{v:.2f} s"


def _back_under(slo: Slo) -> str:
    return f"p{slo.percentile * 100:g} back under {slo.latency_s:g} s without errors"


def _unknown(key: str, text: str, measured: str, what: str) -> Promise:
    return Promise(key, text, None, measured, "unknown", f"needs {what}")


def _errors_text(records: list[ClientRecord], expected: Callable[[ClientRecord], bool] = lambda r: False) -> str:
    c = Counter(r.error_class or "other" for r in records if not r.ok and not expected(r))
    return ", ".join(f"{k} {v}" for k, v in c.most_common()) or "none"


def _eject_promise(key: str, run: DrillRun, facts: Facts, address: str, since: Event, down_until: float,
                   bound_s: float, bound_why: str) -> tuple[Promise, float | None]:
    """nginx stops sending to ``address`` within ``bound_s``, then leaves it alone for fail_timeout."""
    text = "nginx stops sending to it"
    if not facts.proxy_log or facts.proxy is None:
        return _unknown(key, text, "-", "nginx's access log (the embedded fleet)"), None
    px = facts.proxy
    att = attempts_on(run, address)
    ejected = ejection(att, since.t_s, px.max_fails)
    during = [a for a in att if since.t_s + TOL_S < a.start_s < down_until]
    if ejected is None:
        why = ("max_fails=0: passive health checks are off" if px.max_fails <= 0
               else f"fewer than max_fails {px.max_fails} failed attempts")
        held = px.max_fails > 0 and len(during) < px.max_fails  # never tried often enough to need ejecting
        return Promise(key, text, held, f"{len(during)} attempts while down, never ejected",
                       f"ejected within {bound_s:.0f} s", why), None
    quiet_end = min(down_until, ejected + px.fail_timeout_s - NGINX_CLOCK_S)
    stray = [a for a in during if ejected + TOL_S < a.start_s < quiet_end]
    took = ejected - since.t_s
    held = took <= bound_s + TOL_S and not stray
    measured = f"ejected {took:.2f} s after the {since.action}, {len(during)} attempts while down" + (
        f", {len(stray)} during its ejection" if stray else "")
    return Promise(key, text, held, measured, f"within {bound_s:.0f} s, none for fail_timeout after",
                   bound_why), ejected


PICKUP_REQUESTS = 3  # a returned server has no connection: least_conn gives it one of the next requests


def _return_promise(key: str, run: DrillRun, facts: Facts, replica: str, since_s: float,
                    back: str = "ready") -> tuple[Promise, float | None, float | None]:
    """After ``replica`` is back (its last ``back`` event: ready again, or SIGCONT), nginx routes to
    it again: once its ejection is over (``fail_timeout`` after its last failure since ``since_s``,
    + 1 s for nginx's clock; no ejection: at once), by the :data:`PICKUP_REQUESTS`-th request nginx
    starts. Returns the promise, the delay after ``back`` and its bound (None when unknown)."""
    text = f"{replica}'s return is picked up"
    found = [e for e in run.events if e.action == back and e.replica == replica]
    ready = found[-1] if found else None
    if ready is None:
        return Promise(key, text, False, f"no {back} event: it never came back", "back and routed to",
                       "the drill brings it back"), None, None
    if not facts.proxy_log or facts.proxy is None or run.proxy is None:
        return _unknown(key, text, "-", "nginx's access log (the embedded fleet)"), None, None
    px = facts.proxy
    att = attempts_on(run, run.address(replica) or "")
    before = [a for a in att if since_s - TOL_S <= a.end_s <= ready.t_s + TOL_S]
    ejected = ejection(before, since_s, px.max_fails)
    last_fail = max((a.end_s for a in before if _failed(a)), default=None)
    eligible = ready.t_s
    if ejected is not None and last_fail is not None:
        eligible = max(ready.t_s, last_fail + px.fail_timeout_s + NGINX_CLOCK_S)
    firsts = sorted(p.attempts[0].start_s for p in run.proxy if p.attempts and p.attempts[0].start_s >= eligible)
    deadline = firsts[PICKUP_REQUESTS - 1] if len(firsts) >= PICKUP_REQUESTS else run.window[1]
    got = pickup(att, ready.t_s)
    took = None if got is None else max(0.0, got - ready.t_s)
    bound = max(0.0, deadline - ready.t_s)
    word = "/ready" if back == "ready" else back.upper()
    why = (f"ejected until fail_timeout {px.fail_timeout_s:g} s after its last failure (+ {NGINX_CLOCK_S:g} s, "
           f"nginx's clock): {eligible - ready.t_s:.2f} s after {word}; then by the {PICKUP_REQUESTS}rd request"
           if ejected is not None else f"never ejected: by the {PICKUP_REQUESTS}rd request after {word}")
    return Promise(key, text, got is not None and got <= deadline + TOL_S,
                   f"routed to {took:.2f} s after {word}" if took is not None else "never routed to again",
                   f"<= {bound:.2f} s", why), took, bound


def _events(run: DrillRun, action: str) -> list[Event]:
    return [e for e in run.events if e.action == action]


# ----------------------------------------------------------------------------- the drills


def judge(run: DrillRun, facts: Facts) -> DrillResult:
    """The verdict of one drill (``run.name`` is one of :data:`toolkit.drills.model.DRILLS`)."""
    fn = {"kill": judge_kill, "restart": judge_restart, "hang": judge_hang, "overload": judge_overload,
          "failover": judge_failover}[run.name]
    return fn(run, facts)


def _down_until(run: DrillRun, replica: str) -> float:
    ready = run.event("start", replica, nth=-1) if run.event("start", replica) else None
    return ready.t_s if ready is not None else run.window[1]


def judge_kill(run: DrillRun, facts: Facts) -> DrillResult:
    kill = run.event("kill")
    hook = run.event("hook")
    inject = kill or hook
    assert inject is not None, "the kill drill has no kill event"
    reqs = in_window(run)
    errors = sum(1 for r in reqs if not r.ok)
    rows = seconds(reqs, facts.slo)
    rec = recovery_s(rows, facts.slo, inject.t_s)
    promises: list[Promise] = []
    bound: int | None = None
    text = "client errors <= requests in flight on it at the kill (+ what the retry policy allows)"
    if kill is not None and facts.proxy_log and facts.proxy is not None:
        addr = run.address(kill.replica) or ""
        inflight = inflight_at(run, addr, kill.t_s)
        allow, allow_why = retry_allowance(facts.proxy, 1, _down_until(run, kill.replica) - kill.t_s)
        lost = 0 if facts.proxy.retries_sent_posts else inflight
        bound = lost + allow
        why = (f"{inflight} in flight on {kill.replica}, "
               + ("retried on another server (proxy_next_upstream non_idempotent)" if facts.proxy.retries_sent_posts
                  else "not retried (POSTs already sent; no non_idempotent)") + f"; {allow_why}")
        promises.append(Promise("kill.errors", text, errors <= bound, f"{errors} ({_errors_text(reqs)})",
                                f"<= {bound}", why))
        ft = facts.proxy.fail_timeout_s
        p, _ = _eject_promise("kill.ejected", run, facts, addr, kill, _down_until(run, kill.replica), ft,
                              f"max_fails {facts.proxy.max_fails} refused connects eject it for fail_timeout {ft:g} s")
        promises.append(p)
    else:
        promises.append(_unknown("kill.errors", text, f"{errors} ({_errors_text(reqs)})",
                                 "nginx's access log: the requests in flight on the victim"))
    rec_bound = None
    if facts.proxy is not None:
        rec_bound = facts.proxy.fail_timeout_s + BUCKET_S
        promises.append(Promise("kill.recovery", _back_under(facts.slo), rec <= rec_bound, f"{rec:.2f} s",
                                f"<= {rec_bound:g} s",
                                f"fail_timeout {facts.proxy.fail_timeout_s:g} s (nginx ejects the dead server) "
                                f"+ {BUCKET_S:g} s buckets"))
    else:
        promises.append(_unknown("kill.recovery", _back_under(facts.slo), f"{rec:.2f} s",
                                 "the load balancer's fail_timeout (--nginx-conf)"))
    pick = None
    if kill is not None:
        p, pick, _ = _return_promise("kill.return", run, facts, kill.replica, kill.t_s)
        promises.append(p)
    who = kill.replica if kill else "the hook's target"
    detail = (f"SIGKILL {who} at {inject.t_s:.1f} s under {run.base_rps:.1f} req/s: {errors} client errors"
              + (f" (bound {bound})" if bound is not None else "") + f", p{facts.slo.percentile * 100:g} back under "
              f"the SLO {rec:.2f} s after" + (f", routed to again {pick:.2f} s after its restart" if pick is not None
                                                else ""))
    return DrillResult("kill", promises, errors, bound, rec, rec_bound, detail, requests=len(reqs))


def judge_restart(run: DrillRun, facts: Facts) -> DrillResult:
    reqs = in_window(run)
    errors = sum(1 for r in reqs if not r.ok)
    promises = [Promise("restart.errors", "a rolling restart (SIGTERM, drain, start, /ready) costs no client error",
                        errors == 0, f"{errors} ({_errors_text(reqs)})", "0",
                        "each replica drains before it stops; nginx retries refused connections")]
    picks: list[float] = []
    bounds: list[float] = []
    primaries = [name for name, (_a, backup) in run.replicas.items() if not backup]
    terms = _events(run, "sigterm")
    restarted = [e.replica for e in terms]
    for e in terms:
        if e.replica not in primaries:
            continue  # a backup serves nothing while the primaries do: its return cannot be seen
        p, took, b = _return_promise(f"restart.return.{e.replica}", run, facts, e.replica, e.t_s)
        promises.append(p)
        if took is not None:
            picks.append(took)
        if b is not None:
            bounds.append(b)
    hook = run.event("hook")
    if not restarted and hook is not None:
        rec = recovery_s(seconds(reqs, facts.slo), facts.slo, hook.t_s)
    else:
        rec = max(picks) if picks else None
    bound = max(bounds) if bounds else None
    drains = [(e.replica, e.t_s) for e in _events(run, "sigterm")]
    exits = {e.replica: e.t_s for e in _events(run, "exited")}
    took = [exits[r] - t for r, t in drains if r in exits]
    detail = (f"{len(drains)} replicas restarted one at a time under {run.base_rps:.1f} req/s"
              + (f" (drained in {min(took):.2f}-{max(took):.2f} s)" if took else "")
              + f": {errors} client errors" + (f"; nginx routed to each again within {max(picks):.2f} s of /ready"
                                                if picks else ""))
    return DrillResult("restart", promises, errors, 0, rec, bound, detail, requests=len(reqs))


def judge_hang(run: DrillRun, facts: Facts) -> DrillResult:
    stop = run.event("sigstop") or run.event("hook")
    assert stop is not None, "the hang drill has no sigstop event"
    cont = run.event("sigcont") or run.event("hook_end")
    reqs = in_window(run)
    errors = sum(1 for r in reqs if not r.ok)
    rows = seconds(reqs, facts.slo)
    rec = recovery_s(rows, facts.slo, stop.t_s)
    promises: list[Promise] = []
    bound: int | None = None
    text = "client errors <= requests in flight on the frozen replica (+ what the retry policy allows)"
    until = cont.t_s if cont is not None else run.window[1]
    if run.event("sigstop") is not None and facts.proxy_log and facts.proxy is not None:
        px = facts.proxy
        addr = run.address(stop.replica) or ""
        inflight = inflight_at(run, addr, stop.t_s)
        bound = 0 if px.retries_sent_posts else inflight
        why = (f"{inflight} in flight at SIGSTOP; " + (
            "every request stuck on it is re-sent elsewhere after proxy_read_timeout (non_idempotent)"
            if px.retries_sent_posts else "a POST sent to it is not retried (no non_idempotent), so only those "
                                          "already in flight may fail"))
        promises.append(Promise("hang.errors", text, errors <= bound, f"{errors} ({_errors_text(reqs)})",
                                f"<= {bound}", why))
        # every request that reached the frozen replica: answered by another within read timeout + SLO
        touched = [p for p in (run.proxy or []) if any(a.address == addr and a.start_s < until and a.end_s > stop.t_s
                                                       for a in p.attempts)]
        failed = [p for p in touched if p.status != 200]
        slowest = max((p.end_s - p.start_s for p in touched), default=0.0)
        limit = px.read_timeout_s + facts.slo.latency_s
        att = attempts_on(run, addr)
        ejected = ejection(att, stop.t_s, px.max_fails)
        stray = [] if ejected is None else [a for a in att if ejected + TOL_S < a.start_s
                                            < min(until, ejected + px.fail_timeout_s - NGINX_CLOCK_S)]
        promises.append(Promise(
            "hang.rerouted", "nginx reroutes what the frozen replica holds after proxy_read_timeout",
            not failed and slowest <= limit + TOL_S and not stray,
            f"{len(touched)} requests reached it: {len(failed)} failed, the slowest answered in {slowest:.2f} s"
            + (f"; ejected {ejected - stop.t_s:.2f} s after SIGSTOP" if ejected is not None else "; not ejected")
            + (f", {len(stray)} sent to it during the ejection" if stray else ""),
            f"0 failed, each <= {limit:g} s", f"proxy_read_timeout {px.read_timeout_s:g} s, then another server "
            f"(proxy_next_upstream {' '.join(px.next_upstream)}) within the SLO {facts.slo.latency_s:g} s"))
    else:
        promises.append(_unknown("hang.errors", text, f"{errors} ({_errors_text(reqs)})",
                                 "nginx's access log: the requests in flight on the frozen replica"))
    rec_bound = None
    if facts.proxy is not None:
        rec_bound = facts.proxy.read_timeout_s + facts.proxy.fail_timeout_s + BUCKET_S
        promises.append(Promise("hang.recovery", _back_under(facts.slo), rec <= rec_bound, f"{rec:.2f} s",
                                f"<= {rec_bound:g} s",
                                f"requests reach a frozen replica until max_fails of them timed out: "
                                f"proxy_read_timeout {facts.proxy.read_timeout_s:g} s + fail_timeout "
                                f"{facts.proxy.fail_timeout_s:g} s + {BUCKET_S:g} s buckets"))
    else:
        promises.append(_unknown("hang.recovery", _back_under(facts.slo), f"{rec:.2f} s",
                                 "proxy_read_timeout and fail_timeout (--nginx-conf)"))
    pick = None
    if run.event("sigcont") is not None:
        p, pick, _ = _return_promise("hang.return", run, facts, stop.replica, stop.t_s, back="sigcont")
        promises.append(p)
    frozen = (until - stop.t_s)
    detail = (f"SIGSTOP {stop.replica or 'the hook target'} for {frozen:.1f} s under {run.base_rps:.1f} req/s: "
              f"{errors} client errors" + (f" (bound {bound})" if bound is not None else "")
              + f", p{facts.slo.percentile * 100:g} back under the SLO {rec:.2f} s after the freeze"
              + (f", routed to again {pick:.2f} s after SIGCONT" if pick is not None else ""))
    return DrillResult("hang", promises, errors, bound, rec, rec_bound, detail, requests=len(reqs))


def expected_refusal(run: DrillRun, slo: Slo) -> Callable[[ClientRecord], bool]:
    """The overload drill's expected errors: load shedding (429/503) of requests intended during the
    overload, or within one SLO latency after it (queued then); nothing is expected elsewhere."""
    start, end = run.event("overload_start"), run.event("overload_end")
    if run.name != "overload" or start is None or end is None:
        return lambda r: False
    lo, hi = start.t_s - TOL_S, end.t_s + slo.latency_s

    def expected(r: ClientRecord) -> bool:
        return r.error_class in REFUSALS and lo <= r.intended_s < hi

    return expected


def judge_overload(run: DrillRun, facts: Facts) -> DrillResult:
    start, end = run.event("overload_start"), run.event("overload_end")
    assert start is not None and end is not None, "the overload drill has no overload_start/end events"
    expected = expected_refusal(run, facts.slo)
    reqs = in_window(run)
    refused = [r for r in reqs if not r.ok and expected(r)]
    other = [r for r in reqs if not r.ok and not expected(r)]
    during = [r for r in reqs if start.t_s <= r.intended_s < end.t_s]
    admitted = [r.latency_s for r in during if r.ok]
    p_adm = nearest_rank(admitted, facts.slo.percentile)
    rows = seconds(reqs, facts.slo, expected)
    rec = recovery_s(rows, facts.slo, end.t_s)
    rec_bound = facts.slo.latency_s + BUCKET_S
    no_hint = [r for r in refused if not r.retry_after]
    offered = len(during) / max(1e-9, end.t_s - start.t_s)
    promises = [
        Promise("overload.shed", "the excess is refused fast with 429/503 and Retry-After", len(no_hint) == 0 and
                bool(refused), f"{len(refused)} refused ({_errors_text(refused, lambda r: False)}), "
                f"{len(no_hint)} without Retry-After", "every refusal carries Retry-After",
                "nginx's limit_req answers 429, a replica's full queue 503 queue_full"),
        Promise("overload.no_other_errors", "no other error (no 502/504, no connection error)", not other,
                f"{len(other)} ({_errors_text(other)})", "0", "refusals are the only errors under overload"),
        Promise("overload.admitted_slo", f"admitted requests stay within p{facts.slo.percentile * 100:g} "
                f"<= {facts.slo.latency_s:g} s", p_adm is not None and p_adm <= facts.slo.latency_s,
                f"p{facts.slo.percentile * 100:g} {_fmt_s(p_adm)} of {len(admitted)} admitted",
                f"<= {facts.slo.latency_s:g} s", "the scenario's SLO"),
        Promise("overload.recovery", "full service after the overload", rec <= rec_bound, f"{rec:.2f} s",
                f"<= {rec_bound:g} s", f"admitted work is bounded by the SLO {facts.slo.latency_s:g} s, "
                f"+ {BUCKET_S:g} s buckets"),
    ]
    growth_txt = ""
    if run.rss is not None and facts.server is not None:
        budget = facts.server.memory_budget_mb * 2**20
        limit = RSS_BUDGET_FACTOR * budget
        base: dict[str, int] = {}
        peak: dict[str, int] = {}
        for t, name, rss in run.rss:
            if t <= start.t_s:
                base[name] = rss  # the last sample before the overload
            elif t <= end.t_s + 5.0:
                peak[name] = max(peak.get(name, 0), rss)
        growth = {n: peak[n] - base[n] for n in peak if n in base}
        worst = max(growth.values(), default=0)
        growth_txt = ", ".join(f"{n} +{g / 2**20:.0f} MiB" for n, g in sorted(growth.items()))
        promises.append(Promise("overload.rss", "every replica's RSS stays bounded", bool(growth) and worst <= limit,
                                f"max growth {worst / 2**20:.0f} MiB ({growth_txt or 'no samples'})",
                                f"<= {limit / 2**20:.0f} MiB",
                                f"{RSS_BUDGET_FACTOR:g} x --memory-budget-mb {facts.server.memory_budget_mb:g} "
                                "(docs/server.md, Memory admission)"))
    else:
        promises.append(_unknown("overload.rss", "every replica's RSS stays bounded", "-",
                                 "the replicas' memory and --memory-budget-mb (the embedded fleet)"))
    pct = f"p{facts.slo.percentile * 100:g}"
    detail = (f"{offered:.0f} req/s offered for {end.t_s - start.t_s:.0f} s: {len(refused)} refused "
              f"({len(no_hint)} without Retry-After), {len(other)} other errors, admitted {pct} {_fmt_s(p_adm)}, "
              f"full service {rec:.2f} s after" + (f"; RSS {growth_txt}" if growth_txt else ""))
    return DrillResult("overload", promises, len(other), 0, rec, rec_bound, detail, requests=len(reqs))


def judge_failover(run: DrillRun, facts: Facts) -> DrillResult:
    kills = _events(run, "kill")
    hook = run.event("hook")
    inject = kills[0] if kills else hook
    assert inject is not None, "the failover drill has no kill event"
    reqs = in_window(run)
    errors = sum(1 for r in reqs if not r.ok)
    rec = recovery_s(seconds(reqs, facts.slo), facts.slo, inject.t_s)
    promises: list[Promise] = []
    bound: int | None = None
    text = "client errors <= requests in flight on the primaries (+ what the retry policy allows)"
    backups = [name for name, (_a, b) in run.replicas.items() if b]
    if kills and facts.proxy_log and facts.proxy is not None:
        px = facts.proxy
        inflight = sum(inflight_at(run, run.address(k.replica) or "", k.t_s) for k in kills)
        down = min(_down_until(run, k.replica) for k in kills) - inject.t_s
        allow, allow_why = retry_allowance(px, len(kills), down)
        bound = (0 if px.retries_sent_posts else inflight) + allow
        why = (f"{inflight} in flight on the primaries, " + ("retried (non_idempotent)" if px.retries_sent_posts
                                                              else "not retried") + f"; {allow_why}")
        promises.append(Promise("failover.errors", text, errors <= bound, f"{errors} ({_errors_text(reqs)})",
                                f"<= {bound}", why))
        until = min(_down_until(run, k.replica) for k in kills)
        served = sum(1 for b in backups for a in attempts_on(run, run.address(b) or "")
                     if inject.t_s < a.start_s < until and a.status == 200)
        late = [r for r in reqs if inject.t_s + px.fail_timeout_s / 2 <= r.intended_s < until and not r.ok]
        promises.append(Promise("failover.backup", "the backup serves while every primary is down",
                                served > 0 and not late, f"{served} answered by {', '.join(backups) or 'no backup'}, "
                                f"{len(late)} errors once the primaries were ejected", "> 0 answered, 0 errors",
                                "backup servers take the traffic when no primary is live"))
    else:
        promises.append(_unknown("failover.errors", text, f"{errors} ({_errors_text(reqs)})",
                                 "nginx's access log: the requests in flight on the primaries"))
    rec_bound = None
    if facts.proxy is not None:
        rec_bound = facts.proxy.fail_timeout_s + BUCKET_S
        promises.append(Promise("failover.recovery", _back_under(facts.slo), rec <= rec_bound, f"{rec:.2f} s",
                                f"<= {rec_bound:g} s", f"fail_timeout {facts.proxy.fail_timeout_s:g} s + "
                                f"{BUCKET_S:g} s buckets"))
    else:
        promises.append(_unknown("failover.recovery", _back_under(facts.slo), f"{rec:.2f} s",
                                 "the load balancer's fail_timeout (--nginx-conf)"))
    picks = []
    for k in kills:
        p, took, _ = _return_promise(f"failover.return.{k.replica}", run, facts, k.replica, k.t_s)
        promises.append(p)
        if took is not None:
            picks.append(took)
    detail = (f"SIGKILL every primary ({', '.join(k.replica for k in kills) or 'the hook'}) at {inject.t_s:.1f} s "
              f"under {run.base_rps:.1f} req/s: {errors} client errors"
              + (f" (bound {bound})" if bound is not None else "")
              + f", p{facts.slo.percentile * 100:g} back under the SLO {rec:.2f} s after"
              + (f"; primaries routed to again within {max(picks):.2f} s of /ready" if picks else ""))
    return DrillResult("failover", promises, errors, bound, rec, rec_bound, detail, requests=len(reqs))
