"""Bench orchestration (``toolkit.runs.bench``) on its seams: a MockTransport, a VirtualClock, fake
probes and host telemetry. A whole run completes in virtual time; the run directory it writes is
the real one (summary, CSVs, HDR log, reports), built by the real recorder and results store.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from toolkit.engine.clock import VirtualClock
from toolkit.errors import TargetError
from toolkit.runs.bench import BenchConfig, BenchSeams, run_bench
from toolkit.samplers import GpuSampler, HostSampler, PrometheusScraper, Telemetry
from toolkit.scenario import load_scenario
from toolkit.thresholds import Thresholds

URL = "http://mock.invalid:8000"
CREATED = datetime(2026, 12, 2, 12, 0, 0, tzinfo=timezone.utc)


class _Host:
    """A quiet 2-core host: 30% busy, the load generator at 20% of a core, no steal."""

    def __init__(self, steal_cores: float = 0.0) -> None:
        self.steal = steal_cores

    def cpu_percent_per_core(self) -> list[float]:
        return [30.0, 30.0]

    def memory_used_bytes(self) -> int:
        return 2 * 2**30

    def loadgen_cpu_percent(self) -> list[float]:
        return [20.0]

    def target_cpu_percent(self) -> float | None:
        return None

    def cpu_split_cores(self) -> tuple[float, float] | None:
        return (0.2, self.steal)


def _scenario(tmp_path: Path, rate: float = 10, duration: float = 20, warmup: float = 2, slo_s: float = 0.5):
    tmp_path.mkdir(parents=True, exist_ok=True)
    p = tmp_path / "probe.yaml"
    p.write_text(f"""name: probe
protocol: {{kind: http, method: POST, path: /work, body: none}}
load: {{mode: open, rate: {rate}}}
duration_s: {duration}
warmup_s: {warmup}
seed: 3
slo: {{latency_s: {slo_s}}}
""")
    return load_scenario(str(p))


def _bench(tmp_path: Path, handler, scenario=None, host: _Host | None = None, scrape=None, preflight=None,
           cfg_over: dict | None = None, **seam_over):
    """``scrape``: the target's /metrics page (a string, or a function of the URL); None: no /metrics.
    ``cfg_over`` / ``seam_over``: BenchConfig fields and BenchSeams replaced."""
    clock = VirtualClock(start=500.0)
    calls: dict[str, list] = {"preflight": [], "telemetry": []}

    def telemetry(base_url, server, urls):
        calls["telemetry"].append((base_url, server, urls))
        return Telemetry(HostSampler(host or _Host()), GpuSampler(read=lambda: []),
                         [PrometheusScraper(u, scrape if callable(scrape) else lambda _u: scrape) for u in urls])

    def pre(base_url, headers):
        calls["preflight"].append(base_url)
        return 200 if preflight is None else preflight(base_url)

    from toolkit.engine.transport import MockTransport

    seams = BenchSeams(
        transport=lambda plan: MockTransport(lambda req: handler(req, clock)),
        clock=clock, preflight=pre, has_metrics=lambda b, h: scrape is not None,
        telemetry=telemetry, now=lambda: CREATED)
    for k, v in seam_over.items():
        setattr(seams, k, v)
    cfg = BenchConfig(scenario=scenario or _scenario(tmp_path), target=URL, out_dir=tmp_path / "results",
                      live=False, quiet=False, thresholds=Thresholds(), **(cfg_over or {}))
    return run_bench(cfg, seams), calls, clock


def _ok_after(service_s: float):
    def handler(req, clock):
        clock.sleep(service_s)
        return 200
    return handler


def test_a_whole_run_in_virtual_time_writes_the_real_run_directory(tmp_path: Path) -> None:
    outcome, calls, clock = _bench(tmp_path, _ok_after(0.1))
    s = outcome.summary
    assert calls["preflight"] == [URL] and calls["telemetry"][0][2] == []  # no /metrics: nothing scraped
    assert outcome.run_dir == tmp_path / "results" / "20261202-120000-probe"
    assert json.loads((outcome.run_dir / "summary.json").read_text()) == s
    for name in ("timeseries.csv", "telemetry.csv", "latency.hlog", "report.html", "report.md"):
        assert (outcome.run_dir / name).exists(), name
    assert s["complete"] is True and s["duration_s"] == 20
    # Poisson arrivals at 10/s for 20 s after the warm-up: the count is the schedule's, not a guess
    assert 150 <= s["requests"]["ok"] <= 250 and s["requests"]["errors"] == 0
    # every request took exactly 0.1 s of (virtual) service time: latency is that, to the HDR's precision
    assert s["latency_s"]["p50"] == pytest.approx(0.1, rel=0.01)
    assert s["latency_s"]["max"] == pytest.approx(0.1, rel=0.01)
    assert s["slo"]["passed"] is True
    # the sampler loop ran once a virtual second beside the load: 22 s of horizon, ~22 rows
    rows = (outcome.run_dir / "telemetry.csv").read_text().splitlines()
    assert 20 <= len(rows) - 1 <= 24
    assert s["host"]["disturbed"] is False and s["loadgen"]["valid"] is True
    assert clock.now() >= 500.0 + 22.0  # virtual time ran the horizon; the test took milliseconds
    assert s["cache"] is None and s["scenario"]["repeat"] is None  # no X-Cache, no cache counters, no repeat model


def test_slow_service_fails_the_slo_and_errors_are_classified(tmp_path: Path) -> None:
    def handler(req, clock):
        clock.sleep(0.8)
        return 503 if int(clock.now() * 10) % 4 == 0 else 200

    s = _bench(tmp_path, handler)[0].summary
    assert s["complete"] is True
    assert s["requests"]["errors"] > 0 and s["requests"]["ok"] > 0
    assert set(s["requests"]["by_class"]) == {"http_503"}, s["requests"]["by_class"]
    assert s["slo"]["passed"] is False
    failed = [c["name"] for c in s["slo"]["checks"] if not c["passed"]]
    assert failed and all(c["measured"] is not None for c in s["slo"]["checks"])


def test_every_request_failing_is_recorded_as_such(tmp_path: Path) -> None:
    def refused(req, clock):
        clock.sleep(0.001)
        raise ConnectionRefusedError(111, "Connection refused")

    s = _bench(tmp_path, refused)[0].summary
    assert s["requests"]["ok"] == 0 and s["requests"]["errors"] > 0
    assert s["requests"]["by_class"] == {"connection": s["requests"]["errors"]}
    assert s["slo"]["passed"] is False


def test_host_interference_marks_the_run_disturbed(tmp_path: Path) -> None:
    s = _bench(tmp_path, _ok_after(0.05), host=_Host(steal_cores=0.5))[0].summary
    assert s["host"]["disturbed"] is True
    assert s["host"]["steal_cpu_cores_mean"] == pytest.approx(0.5)
    assert any("busy with other work" in w and "steal by the hypervisor 0.50" in w for w in s["loadgen"]["warnings"])


def test_target_metrics_are_scraped_in_the_window(tmp_path: Path) -> None:
    exposition = ('asrtk_model_info{model="asr",preset="tiny",provider="CPUExecutionProvider"} 1\n'
                  'asrtk_ready 1\n')
    outcome, calls, _ = _bench(tmp_path, _ok_after(0.05), scrape=exposition)
    assert calls["telemetry"][0][2] == [URL + "/metrics"]
    assert (outcome.run_dir / "server_metrics.csv").exists()


def _behind_nginx(extra_pids: list[int]):
    """A local target found to be nginx in front of two loopback servers (what discover returns)."""
    from toolkit.engine.local_target import LocalTarget, TargetProcess

    conf = "/etc/nginx/nginx.conf"
    return LocalTarget(
        processes=[TargetProcess(100, "nginx", "nginx master, listening on port 8000"),
                   TargetProcess(201, "python3", f"nginx upstream 127.0.0.1:8001 from {conf}"),
                   TargetProcess(202, "python3", f"nginx upstream 127.0.0.1:8002 from {conf}")]
        + [TargetProcess(p, "worker", "--target-pids") for p in extra_pids],
        nginx_conf=conf, upstreams=["127.0.0.1:8001", "127.0.0.1:8002"])


def _server_pages(url: str) -> str:
    return 'asrtk_model_info{model="asr",preset="tiny",provider="CPUExecutionProvider"} 1\n'


def test_behind_a_local_nginx_the_upstreams_are_scraped_and_the_target_says_who_it_was(tmp_path: Path) -> None:
    found: list = []
    probed: list = []

    def local_target(base_url, server, extra_pids):
        found.append((base_url, extra_pids))
        return _behind_nginx(extra_pids)

    def has_metrics(base_url, headers):
        probed.append((base_url, headers))
        return base_url != URL  # nginx answers /metrics with 404, its servers with their metrics

    checked: list = []
    outcome, calls, _ = _bench(tmp_path, _ok_after(0.05), scrape=_server_pages,
                               cfg_over={"target_pids": [300], "headers": {"Authorization": "Bearer t"}},
                               local_target=local_target, has_metrics=has_metrics, check_pids=checked.append)
    s = outcome.summary
    assert checked == [[300]] and found == [(URL, [300])]
    # each server one by one; the target's headers never go to them
    urls = ["http://127.0.0.1:8001/metrics", "http://127.0.0.1:8002/metrics"]
    assert calls["telemetry"][0][2] == urls
    assert ("http://127.0.0.1:8001", {}) in probed and all(h == {} for b, h in probed if b != URL)
    assert s["server"]["scraped"] == urls and s["server"]["scraped_from"] == "nginx upstreams from /etc/nginx/nginx.conf"
    local = s["target"]["local"]
    assert [p["pid"] for p in local["processes"]] == [100, 201, 202, 300]
    assert local["processes"][-1]["found_by"] == "--target-pids" and local["upstreams"] == ["127.0.0.1:8001", "127.0.0.1:8002"]

    from toolkit.report import local_target_line, scraped_line

    assert local_target_line(local) == ("nginx 100 (nginx master, listening on port 8000); python3 201 at "
                                        "127.0.0.1:8001, python3 202 at 127.0.0.1:8002 (nginx upstreams from "
                                        "/etc/nginx/nginx.conf); worker 300 (--target-pids)")
    assert scraped_line(s) == f"{urls[0]}, {urls[1]}; source: nginx upstreams from /etc/nginx/nginx.conf"
    md = (outcome.run_dir / "report.md").read_text()
    assert "target processes" in md and "python3 201 at 127.0.0.1:8001" in md


def test_scrape_as_given_wins_and_a_target_with_metrics_is_scraped_itself(tmp_path: Path) -> None:
    given = _bench(tmp_path / "given", _ok_after(0.05), scrape=_server_pages,
                   cfg_over={"scrape": ["http://gpu-1:9400/metrics"]},
                   local_target=lambda b, s, p: _behind_nginx(p))
    assert given[1]["telemetry"][0][2] == ["http://gpu-1:9400/metrics"]
    assert given[0].summary["server"]["scraped_from"] == "--scrape"
    # no upstream serves /metrics: the target's own, as before
    own = _bench(tmp_path / "own", _ok_after(0.05), scrape=_server_pages,
                 local_target=lambda b, s, p: _behind_nginx(p), has_metrics=lambda b, h: b == URL)
    assert own[1]["telemetry"][0][2] == [URL + "/metrics"] and own[0].summary["server"]["scraped_from"] == "the target"
    assert own[0].summary["target"]["local"]["nginx_conf"] == "/etc/nginx/nginx.conf"
    # a remote target: no local processes, target.local is null
    remote = _bench(tmp_path / "remote", _ok_after(0.05))[0].summary
    assert remote["target"]["local"] is None and remote["server"] is None


def test_an_unreachable_target_fails_before_any_load_and_writes_nothing(tmp_path: Path) -> None:
    def down(_base_url):
        raise TargetError(f"cannot reach {URL}")

    handled: list = []

    def handler(req, clock):
        handled.append(req)
        return 200

    with pytest.raises(TargetError):
        _bench(tmp_path, handler, preflight=down)
    assert handled == []
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


# -- the run's verdict (exit code) from what it wrote ------------------------------------------

def test_the_verdict_of_a_run_is_its_exit_code(tmp_path: Path) -> None:
    from toolkit.results import bench_verdict

    ok = _bench(tmp_path / "ok", _ok_after(0.1))[0].summary
    assert bench_verdict(ok) == (0, None)

    slow = _bench(tmp_path / "slow", _ok_after(0.8))[0].summary
    code, line = bench_verdict(slow)
    assert code == 3 and line.startswith("SLO failed: latency_p95_s 0.8")
    assert bench_verdict(slow, fail_on_slo=False) == (0, None)

    # a failure on a disturbed host may be the disturbance's: inconclusive, not a regression
    busy = _bench(tmp_path / "busy", _ok_after(0.8), host=_Host(steal_cores=0.5))[0].summary
    code, line = bench_verdict(busy)
    assert code == 4 and line.startswith("inconclusive: the SLO failed") and "disturbed" in line
    # ... while a pass on a disturbed host stands (disturbance only ever adds latency), labelled
    code, line = bench_verdict(_bench(tmp_path / "busy-ok", _ok_after(0.05), host=_Host(steal_cores=0.5))[0].summary)
    assert code == 0 and line == ("SLO met, but the host was disturbed by other work: latency may be inflated "
                                  "and will not repeat")


def test_no_request_succeeding_is_a_failed_run_named_by_its_commonest_error(tmp_path: Path) -> None:
    from toolkit.results import bench_verdict

    def mostly_timeouts(req, clock):
        clock.sleep(0.01)
        if int(clock.now() * 100) % 3:
            raise TimeoutError("timed out")
        return 501

    s = _bench(tmp_path, mostly_timeouts)[0].summary
    code, line = bench_verdict(s)
    assert code == 1
    n = s["requests"]["by_class"]["timeout"]
    assert line == (f"no request succeeded against {URL}: {s['requests']['total']} of {s['requests']['total']} "
                    f"failed, most often timeout ({n}): no response within the per-request timeout")
    assert set(s["requests"]["by_class"]) == {"timeout", "http_501"}


# -- result caches and repeated traffic ----------------------------------------------------------

def _tts_scenario(tmp_path: Path, repeat: str, rate: float = 40, duration: float = 60, warmup: float = 5):
    tmp_path.mkdir(parents=True, exist_ok=True)
    p = tmp_path / "tts-cached.yaml"
    p.write_text(f"""name: tts-cached
protocol: {{kind: tts}}
text: {{min_chars: 20, max_chars: 120, emotions: [neutral, happy]}}
repeat: {repeat}
load: {{mode: open, rate: {rate}}}
duration_s: {duration}
warmup_s: {warmup}
seed: 11
slo: {{latency_s: 1.2}}
""")
    return load_scenario(str(p))


class _CachedTts:
    """A TTS target with a result cache keyed by the request (text, emotion): a hit answers in 10 ms,
    a miss synthesises for 300 ms. ``entries`` None: keeps everything (Redis, TTL beyond the run);
    else an in-memory LRU of that many results. It says so in X-Cache and counts its lookups in
    asrtk_cache_lookups_total, as the reference server does."""

    def __init__(self, entries: int | None = None, header: bool = True) -> None:
        from collections import OrderedDict

        self.entries, self.header = entries, header
        self.cache: OrderedDict[bytes, None] = OrderedDict()
        self.counts = {"hit": 0, "miss": 0}

    def __call__(self, req, clock):
        key = req.body
        hit = key in self.cache
        if hit:
            self.cache.move_to_end(key)
        clock.sleep(0.01 if hit else 0.3)
        if not hit:
            self.cache[key] = None
            if self.entries is not None and len(self.cache) > self.entries:
                self.cache.popitem(last=False)
        self.counts["hit" if hit else "miss"] += 1
        return (200, b"", {"X-Cache": "hit" if hit else "miss"} if self.header else {})

    def metrics(self, _url: str) -> str:
        level = "redis" if self.entries is None else "memory"
        return "".join(f'asrtk_cache_requests_total{{model="tts",result="{r}"}} {n}\n'
                       f'asrtk_cache_lookups_total{{model="tts",level="{level}",result="{r}"}} {n}\n'
                       for r, n in self.counts.items())


def test_a_cached_target_shows_its_hit_ratio_next_to_the_expected_one(tmp_path: Path) -> None:
    target = _CachedTts()
    sc = _tts_scenario(tmp_path, "{distribution: zipf, s: 1.1, catalog: 2000}")
    outcome, _calls, _ = _bench(tmp_path, target, scenario=sc, scrape=target.metrics)
    s = outcome.summary
    cache = s["cache"]
    client, server, expected = cache["client"], cache["server"], cache["expected"]
    assert s["scenario"]["repeat"] == [{"scenario": "tts-cached", "distribution": "zipf", "s": 1.1,
                                        "catalog": 2000, "cache_entries": None}]
    assert client["responses"] == s["requests"]["ok"] and client["hits"] + client["misses"] == client["responses"]
    # the latency of hits and misses apart, exact (virtual service times)
    assert client["latency_hit_s"]["p50"] == pytest.approx(0.01, rel=0.01)
    assert client["latency_miss_s"]["p99"] == pytest.approx(0.3, rel=0.01)
    assert client["latency_hit_s"]["count"] == client["hits"]
    # ~200 arrivals in the warm-up and ~2400 in the window, from an empty cache: the hit ratio is
    # known to +-0.01 (one standard deviation)
    assert expected["requests"] == s["requests"]["total"] and 150 <= expected["requests_before"] <= 250
    assert 0.6 < expected["hit_ratio"] < 0.9 and expected["steady_hit_ratio"] is None
    assert client["hit_ratio"] == pytest.approx(expected["hit_ratio"], abs=0.035)
    # the target's own counters over the window say the same
    assert server["levels"]["redis"]["lookups"] == server["requests"] > 0
    assert server["hit_ratio"] == pytest.approx(client["hit_ratio"], abs=0.03)
    md = (outcome.run_dir / "report.md").read_text()
    assert "## Cache (successful responses, measured window)" in md and "zipf s=1.1 over 2,000 items" in md
    assert "Cache (successful responses" in (outcome.run_dir / "report.html").read_text()

    from toolkit.report import cache_line

    line = cache_line(s)
    assert line is not None and "\n" not in line
    assert line.startswith(f"{client['hit_ratio'] * 100:.3g} % of {client['responses']:,} responses (p50 hit 10 ms")
    assert "server " in line and "expected " in line


def test_an_lru_cache_is_expected_to_hit_what_ches_approximation_says(tmp_path: Path) -> None:
    target = _CachedTts(entries=100)
    sc = _tts_scenario(tmp_path, "{distribution: zipf, s: 1.0, catalog: 3000, cache_entries: 100}")
    s = _bench(tmp_path, target, scenario=sc)[0].summary
    expected = s["cache"]["expected"]
    assert s["cache"]["server"] is None  # no /metrics
    assert expected["models"][0]["cache_entries"] == 100 and expected["steady_hit_ratio"] is not None
    assert expected["hit_ratio"] < expected["steady_hit_ratio"]  # the run starts cold
    assert s["cache"]["client"]["hit_ratio"] == pytest.approx(expected["hit_ratio"], abs=0.035)


def test_a_target_without_the_header_has_no_client_hit_ratio(tmp_path: Path) -> None:
    target = _CachedTts(header=False)
    sc = _tts_scenario(tmp_path, "{catalog: 100}", duration=10, warmup=0)
    s = _bench(tmp_path, target, scenario=sc, scrape=target.metrics)[0].summary
    client = s["cache"]["client"]
    assert client["responses"] == 0 and client["hit_ratio"] is None and client["latency_hit_s"]["count"] == 0
    assert s["cache"]["server"]["hit_ratio"] > 0.2  # the counters still tell
    # without the counters either, the target has no cache as far as anyone can tell
    s = _bench(tmp_path / "plain", _CachedTts(header=False), scenario=sc)[0].summary
    assert s["cache"] is None and s["scenario"]["repeat"][0]["catalog"] == 100
