"""Telemetry during a run, at 1 Hz: host (psutil), GPUs (NVML), the target's ``/metrics``.

Every sampler has one method, ``sample() -> dict`` of column -> value, and reads through
one injected source, so a test can feed it recorded data. Summaries over the measured
window are pure functions of the collected rows.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from toolkit import nvml
from toolkit.units import public_url


class Sampler(Protocol):
    def sample(self) -> dict[str, Any]: ...


# ------------------------------------------------------------------------------ host


class HostSource(Protocol):
    def cpu_percent_per_core(self) -> list[float]: ...
    def memory_used_bytes(self) -> int: ...
    def loadgen_cpu_percent(self) -> list[float]: ...
    def set_target_roots(self, pids: Sequence[int]) -> None: ...
    def target_cpu_percent(self) -> float | None: ...
    def cpu_split_cores(self) -> tuple[float, float] | None: ...


def listening_pids(port: int) -> list[int]:
    """Processes listening on a local TCP ``port`` ([] where the OS will not say, e.g. not root on macOS)."""
    import psutil

    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return []
    return sorted({c.pid for c in conns
                   if c.pid and c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port})


_CLK_TCK: float | None = None


def host_steal_s() -> float | None:
    """CPU time the hypervisor has taken from this machine so far, all CPUs (seconds, from
    /proc/stat; None where there is none): the difference over a span, divided by the span, is
    the steal in cores that the host check counts as interference."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    import os

    return float(fields[8]) / os.sysconf("SC_CLK_TCK") if len(fields) > 8 and fields[0] == "cpu" else None


class StealSpan:
    """The hypervisor's CPU steal over a span, in cores: made at its start, :meth:`cores` at its end
    (None where the machine does not count steal). For work without a host check of its own."""

    def __init__(self, read: Callable[[], float | None] = host_steal_s,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._read, self._clock = read, clock
        self._steal0, self._t0 = read(), clock()

    def cores(self) -> float | None:
        steal1, elapsed = self._read(), self._clock() - self._t0
        if self._steal0 is None or steal1 is None or elapsed <= 0:
            return None
        return (steal1 - self._steal0) / elapsed


def _proc_cpu_s(pid: int) -> float | None:
    """utime + stime of a process from /proc (Linux), seconds; None when it is gone or unreadable."""
    global _CLK_TCK
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    if _CLK_TCK is None:
        import os

        _CLK_TCK = float(os.sysconf("SC_CLK_TCK"))
    fields = data[data.rindex(b")") + 2:].split()  # the name may hold spaces and parentheses
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


class PsutilSource:
    """Reads this host. ``loadgen_pids``: the load-generating processes (this one, workers).
    ``target_pids``: a target on this host (the process listening on its port); their CPU,
    children included, is measured so that what is left over is other work on the host.

    A sample runs in the load generator's event loop, so it must be cheap: on Linux it reads
    /proc/stat, /proc/meminfo and each watched process's /proc/PID/stat directly (about 0.1 ms
    a second; psutil's per-call overhead made it 2 ms, and the requests in flight meanwhile
    measured it). The target's process tree (a scan of every process) is refreshed every
    TREE_REFRESH_S seconds, not every second. Elsewhere psutil does it all."""

    TREE_REFRESH_S = 10.0

    def __init__(self, loadgen_pids: Sequence[int] = (), target_pids: Sequence[int] = ()) -> None:
        import os

        import psutil

        self._psutil = psutil
        self._linux = os.path.exists("/proc/stat") and _proc_cpu_s(os.getpid()) is not None
        self._procs: dict[int, Any] = {}
        self._last: dict[int, tuple[float, float]] = {}  # pid -> (cpu seconds, monotonic) at the last read
        for pid in [os.getpid(), *loadgen_pids]:
            self.add_process(pid)
        self._target_roots: list[Any] = []
        self._target: dict[int, Any] = {}
        self._tree_at = -math.inf
        self._target_read_at = time.monotonic()
        for pid in target_pids:
            try:
                self._target_roots.append(psutil.Process(pid))
            except psutil.Error:
                pass
        self.target_cpu_percent()  # sets the per-process baselines
        self._cores_prev: list[tuple[float, float]] | None = None
        self.cpu_percent_per_core()  # the first call only sets the baseline
        self._times = (time.monotonic(), self._cpu_times())

    # -- /proc readers (Linux), psutil elsewhere -----------------------------------------------

    def _stat_lines(self) -> list[list[str]]:
        with open("/proc/stat", encoding="ascii") as f:
            return [ln.split() for ln in f if ln.startswith("cpu")]

    def _cpu_times(self) -> Any:
        if not self._linux:
            return self._psutil.cpu_times()
        from types import SimpleNamespace

        v = [float(x) / (_CLK_TCK or 100.0) for x in self._stat_lines()[0][1:]]
        v += [0.0] * (8 - len(v))
        return SimpleNamespace(user=v[0], nice=v[1], system=v[2], idle=v[3], iowait=v[4], irq=v[5],
                               softirq=v[6], steal=v[7])

    def _pct(self, pid: int, p: Any) -> float | None:
        """% of one core process ``pid`` (psutil handle ``p``) used since the last read of it
        (None: gone); the first read of a process sets its baseline and gives 0."""
        now, cpu = time.monotonic(), (_proc_cpu_s(pid) if self._linux else _psutil_cpu_s(p))
        if cpu is None:
            self._last.pop(pid, None)
            return None
        prev = self._last.get(pid)
        self._last[pid] = (cpu, now)
        if prev is None or now <= prev[1]:
            return 0.0
        return max(0.0, (cpu - prev[0]) / (now - prev[1]) * 100.0)

    def cpu_split_cores(self) -> tuple[float, float] | None:
        """(process CPU, CPU steal) of the whole host since the last call, in cores. Process CPU is
        user + nice + system: the time processes are charged for (irq and softirq are not)."""
        now, t1 = time.monotonic(), self._cpu_times()
        t0_wall, t0 = self._times
        self._times = (now, t1)
        dt = now - t0_wall
        if dt <= 0:
            return None
        proc = sum(getattr(t1, f, 0.0) - getattr(t0, f, 0.0) for f in ("user", "nice", "system"))
        steal = getattr(t1, "steal", 0.0) - getattr(t0, "steal", 0.0)
        return max(0.0, proc / dt), max(0.0, steal / dt)

    @property
    def watches_target(self) -> bool:
        return bool(self._target_roots)

    def _refresh_tree(self) -> None:
        ps = self._psutil
        live: dict[int, Any] = {}
        for root in self._target_roots:
            try:
                tree = [root, *root.children(recursive=True)]
            except ps.Error:
                continue
            for p in tree:
                live[p.pid] = self._target.get(p.pid, p)
        self._target = live
        self._tree_at = time.monotonic()

    def set_target_roots(self, pids: Sequence[int]) -> None:
        """Follow a target whose processes change (a fleet whose replicas are killed and restarted).
        A root not seen before started since the last read, so all its CPU is counted in the next
        one (a baseline of zero then), not charged to "other work" as a baseline at the read would."""
        if sorted(pids) == sorted(p.pid for p in self._target_roots):
            return
        roots = []
        for pid in pids:
            try:
                roots.append(self._psutil.Process(pid))
            except self._psutil.Error:
                continue
            if pid not in self._last:
                self._last[pid] = (0.0, self._target_read_at)
        self._target_roots = roots
        self._tree_at = -math.inf

    def target_cpu_percent(self) -> float | None:
        """CPU of the target's process trees since the last call, % of one core (None: not local)."""
        if not self._target_roots:
            return None
        self._target_read_at = time.monotonic()
        if time.monotonic() - self._tree_at >= self.TREE_REFRESH_S:
            self._refresh_tree()
        total = 0.0
        for pid, p in list(self._target.items()):
            v = self._pct(pid, p)
            if v is None:
                self._target.pop(pid, None)  # gone: a restarted worker is found at the next refresh
                continue
            total += v
        return total

    def add_process(self, pid: int) -> None:
        try:
            p = self._psutil.Process(pid)
        except self._psutil.Error:
            return
        self._procs[pid] = p
        self._pct(pid, p)

    def cpu_percent_per_core(self) -> list[float]:
        if not self._linux:
            return list(self._psutil.cpu_percent(percpu=True))
        cur = []
        for f in self._stat_lines()[1:]:
            v = [float(x) for x in f[1:]]
            idle = v[3] + (v[4] if len(v) > 4 else 0.0)  # idle + iowait
            cur.append((sum(v[:8]), idle))
        prev, self._cores_prev = self._cores_prev, cur
        if prev is None or len(prev) != len(cur):
            return [0.0] * len(cur)
        out = []
        for (t1, i1), (t0, i0) in zip(cur, prev):
            out.append(100.0 * (1.0 - (i1 - i0) / (t1 - t0)) if t1 > t0 else 0.0)
        return out

    def memory_used_bytes(self) -> int:
        if not self._linux:
            vm = self._psutil.virtual_memory()
            return int(vm.total - vm.available)
        info: dict[str, int] = {}
        with open("/proc/meminfo", encoding="ascii") as f:
            for ln in f:
                k, _, v = ln.partition(":")
                if k in ("MemTotal", "MemAvailable"):
                    info[k] = int(v.split()[0]) * 1024
                    if len(info) == 2:
                        break
        return info.get("MemTotal", 0) - info.get("MemAvailable", 0)

    def loadgen_cpu_percent(self) -> list[float]:
        out = []
        for pid, p in list(self._procs.items()):
            v = self._pct(pid, p)
            if v is None:
                self._procs.pop(pid, None)
                continue
            out.append(v)
        return out


def _psutil_cpu_s(p: Any) -> float | None:
    try:
        t = p.cpu_times()
    except Exception:  # noqa: BLE001 - psutil.Error: the process is gone
        return None
    return float(t.user + t.system)


class HostSampler:
    """``cpu_percent`` is the host mean over cores; ``loadgen_cpu_percent`` is the busiest
    load-generator process in % of one core (one Python process saturates one core).
    ``target_cpu_cores``: a target on this host (None when it is elsewhere);
    ``other_cpu_cores``: process CPU that is neither the load generator nor a local target (other
    work on the host); ``steal_cpu_cores``: CPU the hypervisor gave to other guests. Both are the
    interference that makes two runs of the same load disagree."""

    def __init__(self, source: HostSource) -> None:
        self.source = source
        self.extra_loadgen: dict[str, float] = {}  # remote workers report their own CPU

    def sample(self) -> dict[str, Any]:
        cores = self.source.cpu_percent_per_core() or [0.0]
        local = self.source.loadgen_cpu_percent()
        loadgen = local + list(self.extra_loadgen.values())
        target = self.source.target_cpu_percent()
        split = self.source.cpu_split_cores()
        other = steal = None
        if split is not None:
            proc, steal = split
            other = max(0.0, proc - sum(local) / 100.0 - (target or 0.0) / 100.0)
        return {
            "cpu_percent": sum(cores) / len(cores),
            "cpu_max_core_percent": max(cores),
            "mem_used_bytes": self.source.memory_used_bytes(),
            "loadgen_cpu_percent": max(loadgen) if loadgen else None,
            "target_cpu_cores": target / 100.0 if target is not None else None,
            "other_cpu_cores": other,
            "steal_cpu_cores": steal,
            "_cores": len(cores),
        }


# ------------------------------------------------------------------------------- GPU


class GpuSampler:
    """NVML on the load host. ``available`` is False (with ``reason``) where NVML cannot run."""

    def __init__(self, read: Callable[[], list[nvml.GpuSample]] = nvml.sample_all) -> None:
        self.read = read
        self.names: dict[int, str] = {}
        try:
            first = read()
            self.available = True
            self.reason = f"{len(first)} GPU(s) via NVML" if first else "NVML sees no GPU"
            self.available = bool(first)
            self.names = {s.index: s.name for s in first}
        except nvml.NvmlUnavailable as exc:
            self.available = False
            self.reason = str(exc)

    def sample(self) -> dict[str, Any]:
        if not self.available:
            return {}
        try:
            samples = self.read()
        except nvml.NvmlUnavailable:
            return {}
        row: dict[str, Any] = {}
        for s in samples:
            p = f"gpu{s.index}_"
            row[p + "util_ratio"] = s.utilization_ratio
            row[p + "mem_used_bytes"] = s.memory_used_bytes
            row[p + "mem_total_bytes"] = s.memory_total_bytes
            row[p + "power_watts"] = s.power_watts
            row[p + "sm_clock_hz"] = s.sm_clock_hz
            row[p + "temp_celsius"] = s.temperature_celsius
            self.names[s.index] = s.name
        return row


# ----------------------------------------------------------------------- Prometheus scrape


def parse_exposition(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Samples of a Prometheus text exposition: (name, labels, value)."""
    from prometheus_client.parser import text_string_to_metric_families

    out = []
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.append((s.name, dict(s.labels), float(s.value)))
    return out


def http_fetch(url: str, timeout_s: float = 2.0) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - user-given scrape URL
        return resp.read().decode("utf-8", errors="replace")


class PrometheusScraper:
    """Scrapes one ``/metrics`` URL; each successful scrape is kept with its time."""

    def __init__(self, url: str, fetch: Callable[[str], str] = http_fetch) -> None:
        self.url = url
        self.public_url = public_url(url)  # what results show: no user:password, no query
        self.fetch = fetch
        self._raw: list[tuple[float, str]] = []
        self._scrapes: list[tuple[float, list[tuple[str, dict[str, str], float]]]] = []
        self.failures = 0
        self.last_error: str | None = None

    def scrape(self, t_s: float) -> None:
        """Fetch now; the text is parsed when :attr:`scrapes` is read (after the run, or by a
        live view), not in the load generator's event loop while requests are in flight."""
        try:
            text = self.fetch(self.url)
        except Exception as exc:  # noqa: BLE001 - a dead target must not stop the run
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            return
        self._raw.append((t_s, text))

    @property
    def scrapes(self) -> list[tuple[float, list[tuple[str, dict[str, str], float]]]]:
        """Every successful scrape, parsed: (time, samples). A page that does not parse counts
        as a failed scrape."""
        while self._raw:
            t_s, text = self._raw.pop(0)
            try:
                samples = parse_exposition(text)
            except Exception as exc:  # noqa: BLE001 - a malformed page is a failed scrape
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                continue
            self._scrapes.append((t_s, [x for x in samples if not x[0].startswith(("python_gc_", "python_info"))]))
        return self._scrapes

    def rows(self) -> Iterable[dict[str, Any]]:
        """``server_metrics.csv`` rows."""
        for t, samples in self.scrapes:
            for name, labels, value in samples:
                yield {"t_s": round(t, 3), "url": self.public_url, "metric": name,
                       "labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())), "value": value}


def _total(samples: list[tuple[str, dict[str, str], float]], name: str) -> float | None:
    vals = [v for n, _l, v in samples if n == name and not math.isnan(v)]
    return sum(vals) if vals else None


def _cpu_seconds(samples: list[tuple[str, dict[str, str], float]]) -> float | None:
    """The server's own CPU counter: the reference server's, else the conventional process one."""
    v = _total(samples, "asrtk_process_cpu_seconds_total")
    return v if v is not None else _total(samples, "process_cpu_seconds_total")


def _window(sc: PrometheusScraper, t_from: float, t_to: float) -> tuple[tuple[float, list], tuple[float, list]] | None:
    """(baseline, last) scrapes of one scraper for the window ``[t_from, t_to]``: the last scrape at
    or before ``t_from`` (else the first one inside: never the counters since the server started,
    which hold earlier runs) and the last one inside. None without two distinct scrapes."""
    before = [(t, s) for t, s in sc.scrapes if t <= t_from]
    inside = [(t, s) for t, s in sc.scrapes if t_from <= t <= t_to + 1.5]
    if not inside:
        return None
    base = before[-1] if before else inside[0]
    if inside[-1][0] <= base[0]:
        return None
    return base, inside[-1]


def _increase(first, last, name: str) -> float | None:
    v1 = _total(last, name)
    if v1 is None:
        return None
    return max(0.0, v1 - (_total(first, name) or 0.0))  # a restarted server's counter starts again at 0


MEMORY_METRIC = "asrtk_process_resident_memory_bytes"  # the workers' resident memory, summed per server


def server_summary(scrapers: Sequence[PrometheusScraper], t_from: float, t_to: float) -> dict[str, Any] | None:
    """Server-side queue, batch and inference figures over ``[t_from, t_to]``, from increases of
    counters between each scraper's baseline (its last scrape at or before ``t_from``, else its
    first in the window) and its last scrape in the window. Names follow the reference server's
    metric contract; other servers give nulls.

    Several scraped URLs (the servers behind a load balancer) make one fleet: counts, rates and
    CPU add up, means pool every server's sums and counts (a mean of means would weigh an idle server
    like a busy one), the queue depth is the highest total over servers scraped in the same
    second. A sum some server could not contribute to (it exposes the counter but had no window)
    is null rather than a part passed off as the whole; ``per_url`` shows each server's share.
    ``memory_max_bytes`` is the highest resident memory any one server reached (what one node or
    pod must hold), not a fleet sum."""
    if not scrapers:
        return None
    for sc in scrapers:
        sc.scrapes  # noqa: B018 - parse what is pending first: a page that does not parse is a failure
    out: dict[str, Any] = {"scraped": [s.public_url for s in scrapers], "queue_depth_max": None,
                           "batch_size_mean": None, "inference_s_mean": None, "queue_wait_s_mean": None,
                           "requests_rps": None, "rejected_total": None, "cpu_cores_mean": None,
                           "memory_max_bytes": None,
                           "scrape_failures": sum(s.failures for s in scrapers), "per_url": []}
    sums: dict[str, list[float]] = {}
    totals: dict[str, float | None] = {"requests_rps": None, "rejected_total": None, "cpu_cores_mean": None}
    incomplete: set[str] = set()
    depth_at: dict[float, float] = {}
    for sc in scrapers:
        row: dict[str, Any] = {"url": sc.public_url, "scrapes": len(sc.scrapes), "failures": sc.failures,
                               "requests_rps": None, "cpu_cores_mean": None}
        out["per_url"].append(row)
        for t, s in sc.scrapes:
            if not t_from <= t <= t_to + 1.5:
                continue
            d = _total(s, "asrtk_queue_depth")
            if d is not None:
                depth_at[round(t, 3)] = depth_at.get(round(t, 3), 0.0) + d
            m = _total(s, MEMORY_METRIC)
            if m is not None and m > 0:
                out["memory_max_bytes"] = max(out["memory_max_bytes"] or 0.0, m)
        win = _window(sc, t_from, t_to)
        latest = sc.scrapes[-1][1] if sc.scrapes else []
        if win is None:
            # a server that exposes a counter but has no window makes every fleet sum of it unknown
            if _cpu_seconds(latest) is not None:
                incomplete.add("cpu_cores_mean")
            if _total(latest, "asrtk_requests_total") is not None:
                incomplete.add("requests_rps")
            if any(n.startswith("asrtk_") for n, _l, _v in latest):
                incomplete.add("rejected_total")
            continue
        (t0, first), (t1, last) = win
        cpu0, cpu1 = _cpu_seconds(first), _cpu_seconds(last)
        served = _increase(first, last, "asrtk_requests_total")
        figures: dict[str, float | None] = {
            "cpu_cores_mean": (max(0.0, cpu1 - cpu0) / (t1 - t0)) if cpu0 is not None and cpu1 is not None else None,
            # a rate: the scrapes bracket the measured window only to the second
            "requests_rps": served / (t1 - t0) if served is not None else None,
            "rejected_total": _increase(first, last, "asrtk_rejected_requests_total"),
        }
        if figures["rejected_total"] is None and any(n.startswith("asrtk_") for n, _l, _v in last):
            figures["rejected_total"] = 0.0  # the counter has no series until a rejection
        row["requests_rps"] = figures["requests_rps"]
        row["cpu_cores_mean"] = figures["cpu_cores_mean"]
        for key, v in figures.items():
            if v is not None:
                totals[key] = (totals[key] or 0.0) + v
        for base in ("asrtk_batch_size", "asrtk_inference_duration_seconds", "asrtk_queue_wait_seconds"):
            ds, dc = _increase(first, last, base + "_sum"), _increase(first, last, base + "_count")
            if ds is not None and dc is not None:
                acc = sums.setdefault(base, [0.0, 0.0])
                acc[0] += ds
                acc[1] += dc
    for key, v in totals.items():
        if v is None or key in incomplete:
            continue
        out[key] = int(round(v)) if key == "rejected_total" else v
    for key, base in (("batch_size_mean", "asrtk_batch_size"),
                      ("inference_s_mean", "asrtk_inference_duration_seconds"),
                      ("queue_wait_s_mean", "asrtk_queue_wait_seconds")):
        s, c = sums.get(base, (0.0, 0.0))
        out[key] = s / c if c > 0 else None
    if depth_at:
        out["queue_depth_max"] = max(depth_at.values())
    return out


CACHE_REQUESTS = "asrtk_cache_requests_total"  # {model, result (hit|miss)}: one per request, hit at any level
CACHE_LOOKUPS = "asrtk_cache_lookups_total"  # {model, level (memory|redis), result (hit|miss|error)}
CACHE_RESULTS = ("hit", "miss", "error")


def _cache_counts(samples: list[tuple[str, dict[str, str], float]]) -> dict[str, dict[str, float]]:
    """Per level (``_requests`` for the request counter): counts by result, summed over models."""
    out: dict[str, dict[str, float]] = {}
    for name, labels, value in samples:
        if name not in (CACHE_REQUESTS, CACHE_LOOKUPS) or math.isnan(value):
            continue
        result = labels.get("result", "")
        if result in CACHE_RESULTS:
            level = "_requests" if name == CACHE_REQUESTS else (labels.get("level") or "cache")
            out.setdefault(level, dict.fromkeys(CACHE_RESULTS, 0.0))[result] += value
    return out


def cache_server_summary(scrapers: Sequence[PrometheusScraper], t_from: float,
                         t_to: float) -> dict[str, Any] | None:
    """The target's own cache figures over ``[t_from, t_to]``: increases of
    ``asrtk_cache_requests_total`` and ``asrtk_cache_lookups_total`` (per level), summed over models
    and scraped URLs, between the last scrape at or before ``t_from`` (else the first in the window)
    and the last one in the window. None when no scrape in the window carried either counter.

    ``requests`` and ``hits`` come from the request counter (a request is a hit when any level
    hit). A target that exports only the lookups: levels are looked up in turn and a request
    stops at its first hit, so every request is one lookup at the first level (the level with the
    most lookups) and a hit at one level at most: ``hits`` is the sum over levels."""
    levels: dict[str, dict[str, int]] = {}
    scraped: list[str] = []
    for sc in scrapers:
        before = [s for t, s in sc.scrapes if t <= t_from]
        inside = [s for t, s in sc.scrapes if t_from <= t <= t_to + 1.5]
        if not inside or not any(n in (CACHE_REQUESTS, CACHE_LOOKUPS) for n, _l, _v in inside[-1]):
            continue
        scraped.append(sc.public_url)
        # no scrape before the window: count from the first one in it, never since the server started
        # (a long-lived server's counters hold earlier runs)
        first = _cache_counts(before[-1] if before else inside[0])
        for level, counts in _cache_counts(inside[-1]).items():
            acc = levels.setdefault(level, dict.fromkeys(CACHE_RESULTS, 0))
            for result, value in counts.items():
                acc[result] += max(0, int(round(value - first.get(level, {}).get(result, 0.0))))
    if not scraped:
        return None
    per_request = levels.pop("_requests", None)
    by_level = {level: {"hits": c["hit"], "misses": c["miss"], "errors": c["error"],
                        "lookups": c["hit"] + c["miss"] + c["error"]} for level, c in sorted(levels.items())}
    if per_request is not None:
        requests, hits = per_request["hit"] + per_request["miss"], per_request["hit"]
    else:
        requests = max((v["lookups"] for v in by_level.values()), default=0)
        hits = sum(v["hits"] for v in by_level.values())
    return {"scraped": scraped, "requests": requests, "hits": hits,
            "hit_ratio": (hits / requests) if requests else None, "levels": by_level}


# ---------------------------------------------------------------------------- telemetry rows


@dataclass
class Telemetry:
    """Collected 1 Hz rows; ``tick(t_s)`` takes one row from every sampler."""

    host: HostSampler
    gpu: GpuSampler
    scrapers: list[PrometheusScraper] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    cores: int = 0

    def tick(self, t_s: float) -> dict[str, Any]:
        row: dict[str, Any] = {"t_s": round(t_s, 3)}
        h = self.host.sample()
        self.cores = int(h.pop("_cores", self.cores) or self.cores)
        row.update(h)
        row.update(self.gpu.sample())
        for sc in self.scrapers:
            sc.scrape(t_s)
        self.rows.append(row)
        return row

    def columns(self) -> list[str]:
        from toolkit.results import TELEMETRY_BASE_COLUMNS

        cols = list(TELEMETRY_BASE_COLUMNS)
        extra = sorted({k for r in self.rows for k in r if k not in cols},
                       key=lambda k: (int(k[3:].split("_", 1)[0]) if k.startswith("gpu") else 0, k))
        return cols + extra


def _vals(rows: Iterable[dict[str, Any]], key: str) -> list[float]:
    return [float(r[key]) for r in rows if r.get(key) is not None]


def interference_threshold(cores: int) -> float:
    """Interference (other processes' CPU + CPU steal, cores) above which a run is disturbed,
    with the default thresholds (see :mod:`toolkit.thresholds`; the orchestrator passes the
    threshold in force, overrides included)."""
    from toolkit.thresholds import Thresholds

    return Thresholds().disturbed_cores(cores)


def _mean(v: list[float]) -> float | None:
    return sum(v) / len(v) if v else None


def host_summary(rows: Sequence[dict[str, Any]], cores: int,
                 threshold_cores: float | None = None) -> dict[str, Any]:
    if threshold_cores is None:
        threshold_cores = interference_threshold(cores)
    cpu = _vals(rows, "cpu_percent")
    mem = _vals(rows, "mem_used_bytes")
    other = _mean(_vals(rows, "other_cpu_cores"))
    steal = _mean(_vals(rows, "steal_cpu_cores"))
    interference = None if other is None and steal is None else (other or 0.0) + (steal or 0.0)
    return {"cores": cores,
            "cpu_mean_percent": _mean(cpu),
            "cpu_max_percent": max(cpu) if cpu else None,
            "memory_used_max_bytes": int(max(mem)) if mem else None,
            "target_cpu_cores_mean": _mean(_vals(rows, "target_cpu_cores")),
            "other_cpu_cores_mean": other,
            "steal_cpu_cores_mean": steal,
            "interference_cpu_cores_mean": interference,
            "interference_threshold_cores": threshold_cores,
            "disturbed": bool(interference is not None and interference > threshold_cores)}


def loadgen_cpu(rows: Sequence[dict[str, Any]]) -> tuple[float | None, float | None]:
    """(mean, max) of the busiest load-generator process, % of one core."""
    v = _vals(rows, "loadgen_cpu_percent")
    return (sum(v) / len(v) if v else None, max(v) if v else None)


def gpu_summary(gpu: GpuSampler, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    devices = []
    for idx in sorted(gpu.names):
        p = f"gpu{idx}_"
        util = _vals(rows, p + "util_ratio")
        used = _vals(rows, p + "mem_used_bytes")
        total = _vals(rows, p + "mem_total_bytes")
        power = _vals(rows, p + "power_watts")
        devices.append({
            "index": idx, "name": gpu.names[idx],
            "util_mean_ratio": sum(util) / len(util) if util else None,
            "util_max_ratio": max(util) if util else None,
            "memory_used_max_bytes": int(max(used)) if used else None,
            "memory_total_bytes": int(max(total)) if total else None,
            "power_mean_watts": sum(power) / len(power) if power else None,
        })
    return {"available": gpu.available, "reason": gpu.reason, "devices": devices}
