"""Samplers fed with recorded data: host, GPU (NVML shapes), Prometheus scrapes, summaries."""

from __future__ import annotations

import os

import pytest

from toolkit import nvml
from toolkit.samplers import (
    GpuSampler, HostSampler, PrometheusScraper, Telemetry, gpu_summary, host_summary, loadgen_cpu,
    StealSpan, host_steal_s, parse_exposition, server_summary,
)


class RecordedHost:
    def __init__(self, cores: list[list[float]], loadgen: list[list[float]],
                 target: list[float | None] | None = None,
                 split: list[tuple[float, float] | None] | None = None) -> None:
        self.cores, self.loadgen = iter(cores), iter(loadgen)
        self.target = iter(target) if target is not None else None
        self.split = iter(split) if split is not None else None

    def target_cpu_percent(self) -> float | None:
        return next(self.target) if self.target is not None else None

    def cpu_split_cores(self) -> tuple[float, float] | None:
        return next(self.split) if self.split is not None else None

    def cpu_percent_per_core(self) -> list[float]:
        return next(self.cores)

    def memory_used_bytes(self) -> int:
        return 3 << 30

    def loadgen_cpu_percent(self) -> list[float]:
        return next(self.loadgen)


def _gpu(i: int, util: float, used: int) -> nvml.GpuSample:
    return nvml.GpuSample(index=i, name="NVIDIA H100", uuid=f"GPU-{i}", utilization_ratio=util,
                          memory_used_bytes=used, memory_total_bytes=80 << 30, power_watts=300.0,
                          sm_clock_hz=1.98e9, temperature_celsius=60.0)


def test_host_sampler_reports_mean_max_core_and_busiest_loadgen_process() -> None:
    h = HostSampler(RecordedHost([[20.0, 80.0]], [[35.0, 95.0]]))
    h.extra_loadgen["remote"] = 50.0
    row = h.sample()
    assert row["cpu_percent"] == 50.0 and row["cpu_max_core_percent"] == 80.0
    assert row["loadgen_cpu_percent"] == 95.0 and row["mem_used_bytes"] == 3 << 30
    assert row["other_cpu_cores"] is None and row["steal_cpu_cores"] is None and row["target_cpu_cores"] is None


def test_other_work_is_process_cpu_minus_local_loadgen_and_target() -> None:
    # 1.6 cores of process CPU: 0.3 + 0.2 load generator, 0.9 target -> 0.2 other; remote workers do not count
    h = HostSampler(RecordedHost([[80.0, 80.0]], [[30.0, 20.0]], target=[90.0], split=[(1.6, 0.1)]))
    h.extra_loadgen["remote"] = 70.0
    row = h.sample()
    assert row["target_cpu_cores"] == pytest.approx(0.9)
    assert row["other_cpu_cores"] == pytest.approx(0.2) and row["steal_cpu_cores"] == pytest.approx(0.1)
    # sampling skew never makes it negative
    h2 = HostSampler(RecordedHost([[50.0]], [[60.0]], target=[80.0], split=[(1.0, 0.0)]))
    assert h2.sample()["other_cpu_cores"] == 0.0


def test_host_summary_marks_a_run_disturbed_by_other_work_or_steal() -> None:
    quiet = [{"other_cpu_cores": 0.01, "steal_cpu_cores": 0.02}] * 3
    busy = [{"other_cpu_cores": 0.02, "steal_cpu_cores": 0.08}, {"other_cpu_cores": 0.6, "steal_cpu_cores": 0.1}]
    q = host_summary(quiet, 2)
    assert q["interference_cpu_cores_mean"] == pytest.approx(0.03) and q["disturbed"] is False
    assert q["interference_threshold_cores"] == 0.1
    assert host_summary(quiet, 32)["interference_threshold_cores"] == pytest.approx(1.6)  # 5% of a big host
    assert host_summary([{"other_cpu_cores": 0.0, "steal_cpu_cores": 0.12}], 2)["disturbed"] is True
    b = host_summary(busy, 2)
    assert b["other_cpu_cores_mean"] == pytest.approx(0.31) and b["steal_cpu_cores_mean"] == pytest.approx(0.09)
    assert b["interference_cpu_cores_mean"] == pytest.approx(0.40) and b["disturbed"] is True
    assert host_summary(busy, 2, threshold_cores=0.5)["disturbed"] is False
    assert host_summary([], 2)["disturbed"] is False  # nothing measured is not a disturbance


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="Linux /proc/stat only")
def test_host_steal_s_is_the_steal_counter_psutil_reads() -> None:
    import psutil

    before = psutil.cpu_times().steal
    got = host_steal_s()
    after = psutil.cpu_times().steal
    assert got is not None and before - 0.011 <= got <= after + 0.011  # 1 tick of rounding


def test_a_steal_span_is_the_steal_over_the_elapsed_time_or_none() -> None:
    steal, now = iter([10.0, 11.5]), iter([100.0, 103.0])
    assert StealSpan(lambda: next(steal), lambda: next(now)).cores() == 0.5  # 1.5 s stolen in 3 s
    assert StealSpan(lambda: None, iter([0.0, 1.0]).__next__).cores() is None  # no steal counter
    assert StealSpan(iter([1.0, 2.0]).__next__, iter([5.0, 5.0]).__next__).cores() is None  # no time passed


def test_gpu_sampler_without_nvml_gives_the_reason() -> None:
    def unavailable() -> list:
        raise nvml.NvmlUnavailable("NVML library not found (libnvidia-ml.so): no NVIDIA driver on this machine")

    g = GpuSampler(unavailable)
    assert g.available is False and "no NVIDIA driver" in g.reason
    assert g.sample() == {}
    assert gpu_summary(g, []) == {"available": False, "reason": g.reason, "devices": []}


def test_gpu_sampler_columns_and_summary_from_recorded_samples() -> None:
    readings = iter([[_gpu(0, 0.0, 1 << 30)], [_gpu(0, 0.5, 2 << 30)], [_gpu(0, 1.0, 4 << 30)]])
    g = GpuSampler(lambda: next(readings))
    assert g.available
    rows = [g.sample(), g.sample()]
    assert rows[0]["gpu0_util_ratio"] == 0.5 and rows[1]["gpu0_mem_used_bytes"] == 4 << 30
    d = gpu_summary(g, rows)["devices"][0]
    assert d["util_mean_ratio"] == pytest.approx(0.75) and d["util_max_ratio"] == 1.0
    assert d["memory_used_max_bytes"] == 4 << 30 and d["memory_total_bytes"] == 80 << 30


def _exposition(depth: float, batch_sum: float, batch_count: float, rejected: float) -> str:
    return f"""# HELP asrtk_queue_depth Items waiting.
# TYPE asrtk_queue_depth gauge
asrtk_queue_depth{{model="asr"}} {depth}
asrtk_queue_depth{{model="tts"}} 1
# HELP asrtk_batch_size Items per batch.
# TYPE asrtk_batch_size histogram
asrtk_batch_size_bucket{{model="asr",le="1.0"}} 0
asrtk_batch_size_bucket{{model="asr",le="+Inf"}} {batch_count}
asrtk_batch_size_sum{{model="asr"}} {batch_sum}
asrtk_batch_size_count{{model="asr"}} {batch_count}
# HELP asrtk_rejected_requests_total Rejected.
# TYPE asrtk_rejected_requests_total counter
asrtk_rejected_requests_total{{route="/recognize",reason="queue_full"}} {rejected}
"""


def test_scraper_parses_and_server_summary_uses_deltas_over_the_window() -> None:
    pages = iter([_exposition(0, 10, 10, 2), _exposition(7, 40, 20, 5), _exposition(3, 100, 40, 9)])
    sc = PrometheusScraper("http://t/metrics", fetch=lambda url: next(pages))
    for t in (1.0, 5.0, 9.0):
        sc.scrape(t)
    s = server_summary([sc], t_from=2.0, t_to=9.0)
    assert s["queue_depth_max"] == 8  # summed over models, max over the window
    assert s["batch_size_mean"] == pytest.approx((100 - 10) / (40 - 10))
    assert s["rejected_total"] == 7
    assert s["inference_s_mean"] is None  # not exposed by this server
    rows = list(sc.rows())
    assert {"t_s": 1.0, "url": "http://t/metrics", "metric": "asrtk_queue_depth", "labels": "model=asr",
            "value": 0.0} in rows


def test_scrape_failure_is_counted_not_raised() -> None:
    def dead(url: str) -> str:
        raise ConnectionRefusedError(111, "Connection refused")

    sc = PrometheusScraper("http://t/metrics", fetch=dead)
    sc.scrape(1.0)
    assert sc.failures == 1 and "ConnectionRefused" in (sc.last_error or "")
    assert server_summary([sc], 0, 10)["queue_depth_max"] is None


def test_parse_exposition_handles_labels_and_counters() -> None:
    got = parse_exposition(_exposition(2, 3, 4, 5))
    assert ("asrtk_rejected_requests_total", {"route": "/recognize", "reason": "queue_full"}, 5.0) in got


def test_telemetry_rows_columns_and_summaries() -> None:
    tel = Telemetry(HostSampler(RecordedHost([[10, 30], [50, 90]], [[20], [92]])),
                    GpuSampler(lambda: [_gpu(0, 0.25, 1 << 30)]))
    tel.tick(1.0)
    tel.tick(2.0)
    assert tel.columns()[:5] == ["t_s", "cpu_percent", "cpu_max_core_percent", "mem_used_bytes",
                                 "loadgen_cpu_percent"]
    assert "gpu0_util_ratio" in tel.columns()
    h = host_summary(tel.rows, tel.cores)
    assert {k: h[k] for k in ("cores", "cpu_mean_percent", "cpu_max_percent", "memory_used_max_bytes")} == {
        "cores": 2, "cpu_mean_percent": 45.0, "cpu_max_percent": 70.0, "memory_used_max_bytes": 3 << 30}
    assert h["target_cpu_cores_mean"] is None and h["disturbed"] is False
    assert loadgen_cpu(tel.rows) == (56.0, 92.0)


def test_reference_server_without_rejections_reports_zero_rejected() -> None:
    page = _exposition(1, 2, 2, 0).split("# HELP asrtk_rejected")[0]
    sc = PrometheusScraper("http://t/metrics", fetch=lambda url: page)
    sc.scrape(1.0)
    sc.scrape(3.0)
    assert server_summary([sc], 0.5, 3.0)["rejected_total"] == 0


def test_server_cpu_cores_from_its_own_cpu_counter() -> None:
    def page(name: str, cpu: float) -> str:
        return f"# HELP {name.removesuffix('_total')} CPU.\n# TYPE {name.removesuffix('_total')} counter\n{name} {cpu}\n"

    for name in ("asrtk_process_cpu_seconds_total", "process_cpu_seconds_total"):
        pages = iter([page(name, 10.0), page(name, 13.0), page(name, 16.5)])
        sc = PrometheusScraper("http://t/metrics", fetch=lambda url, p=pages: next(p))
        for t in (1.0, 5.0, 8.0):
            sc.scrape(t)
        s = server_summary([sc], t_from=2.0, t_to=8.0)
        assert s["cpu_cores_mean"] == pytest.approx((16.5 - 10.0) / (8.0 - 1.0)), name
    # without a scrape before the window there is no baseline: unknown, not a guess
    only_inside = PrometheusScraper("http://t/metrics", fetch=lambda url: page("process_cpu_seconds_total", 3.0))
    only_inside.scrape(5.0)
    assert server_summary([only_inside], t_from=2.0, t_to=8.0)["cpu_cores_mean"] is None


def _cache_page(**counts: int) -> str:
    """asrtk_cache_lookups_total as prometheus_client exposes it; keys like tts_memory_hit=3."""
    lines = ["# HELP asrtk_cache_lookups_total Cache lookups.", "# TYPE asrtk_cache_lookups_total counter"]
    for key, n in counts.items():
        model, level, result = key.split("_")
        labels = f'level="{level}",model="{model}",result="{result}"'
        lines += [f"asrtk_cache_lookups_total{{{labels}}} {n}", f"asrtk_cache_lookups_created{{{labels}}} 1.7e9"]
    return "\n".join(lines) + "\n"


def test_cache_server_summary_counts_hits_at_any_level_over_the_window() -> None:
    from toolkit.samplers import cache_server_summary

    pages = iter([
        _cache_page(tts_memory_hit=10, tts_memory_miss=90, tts_redis_hit=40, tts_redis_miss=50),  # before the window
        _cache_page(tts_memory_hit=30, tts_memory_miss=170, tts_redis_hit=90, tts_redis_miss=80,
                    tts_redis_error=2, emotion_memory_miss=5),  # redis_error: a new series, 0 before
        _cache_page(tts_memory_hit=999, tts_memory_miss=999),  # after the window
    ])
    sc = PrometheusScraper("http://t/metrics", fetch=lambda url: next(pages))
    for t in (1.0, 8.0, 20.0):
        sc.scrape(t)
    s = cache_server_summary([sc], t_from=2.0, t_to=9.0)
    assert s is not None and s["scraped"] == ["http://t/metrics"]
    assert s["levels"] == {"memory": {"hits": 20, "misses": 85, "errors": 0, "lookups": 105},
                           "redis": {"hits": 50, "misses": 30, "errors": 2, "lookups": 82}}
    # without the request counter: every request looks in memory first, a redis lookup follows a miss
    assert s["requests"] == 105 and s["hits"] == 70 and s["hit_ratio"] == pytest.approx(70 / 105)


def test_cache_server_summary_takes_requests_and_hits_from_the_request_counter() -> None:
    from toolkit.samplers import cache_server_summary

    def page(hit: int, miss: int, lookups_hit: int) -> str:
        return (_cache_page(tts_memory_hit=lookups_hit, tts_memory_miss=miss)
                + f'asrtk_cache_requests_total{{model="tts",result="hit"}} {hit}\n'
                + f'asrtk_cache_requests_total{{model="tts",result="miss"}} {miss}\n'
                + 'asrtk_cache_requests_total{model="asr",result="hit"} 0\n')  # pre-created at 0

    pages = iter([page(0, 0, 0), page(0, 0, 0), page(30, 10, 31)])
    sc = PrometheusScraper("http://t/metrics", fetch=lambda url: next(pages))
    for t in (1.0, 3.0, 9.0):
        sc.scrape(t)
    s = cache_server_summary([sc], t_from=2.0, t_to=9.0)
    assert (s["requests"], s["hits"], s["hit_ratio"]) == (40, 30, 0.75)
    assert set(s["levels"]) == {"memory"}
    # a cache that saw no request in the window is still a cache: zeros, no ratio
    idle = PrometheusScraper("http://t/metrics", fetch=lambda url: page(0, 0, 0))
    idle.scrape(5.0)
    assert cache_server_summary([idle], 2.0, 9.0)["hit_ratio"] is None


def test_cache_server_summary_is_none_without_the_counter_and_never_counts_earlier_runs() -> None:
    from toolkit.samplers import cache_server_summary

    plain = PrometheusScraper("http://t/metrics", fetch=lambda url: "asrtk_ready 1\n")
    plain.scrape(5.0)
    assert cache_server_summary([plain], 2.0, 9.0) is None
    assert cache_server_summary([], 2.0, 9.0) is None
    # no scrape before the window (no warm-up): deltas from the first one in it, not from the
    # counters' totals, which hold whatever ran against this server before
    pages = iter([_cache_page(asr_memory_hit=500, asr_memory_miss=500),
                  _cache_page(asr_memory_hit=530, asr_memory_miss=570)])
    sc = PrometheusScraper("http://t/metrics", fetch=lambda url: next(pages))
    for t in (1.0, 9.0):
        sc.scrape(t)
    s = cache_server_summary([sc], 0.0, 10.0)
    assert (s["requests"], s["hits"]) == (100, 30)


# -- several scraped servers: one fleet --------------------------------------------------------


def _server_page(requests: float, depth: float, batch: tuple[float, float], cpu: float, rejected: float | None) -> str:
    """The reference server's names, as prometheus_client exposes them."""
    lines = [
        "# TYPE asrtk_requests_total counter",
        f'asrtk_requests_total{{route="/recognize",status="200"}} {requests}',
        f'asrtk_requests_total{{route="/recognize",status="503"}} {requests / 10}',
        "# TYPE asrtk_queue_depth gauge", f'asrtk_queue_depth{{model="asr"}} {depth}',
        "# TYPE asrtk_batch_size histogram",
        f'asrtk_batch_size_bucket{{model="asr",le="+Inf"}} {batch[1]}',
        f'asrtk_batch_size_sum{{model="asr"}} {batch[0]}', f'asrtk_batch_size_count{{model="asr"}} {batch[1]}',
        "# TYPE asrtk_process_cpu_seconds counter", f"asrtk_process_cpu_seconds_total {cpu}",
    ]
    if rejected is not None:
        lines += ["# TYPE asrtk_rejected_requests counter",
                  f'asrtk_rejected_requests_total{{route="/recognize",reason="queue_full"}} {rejected}']
    return "\n".join(lines) + "\n"


def _scraped(url: str, pages: dict[float, str]) -> PrometheusScraper:
    sc = PrometheusScraper(url, fetch=lambda _u: pages[t])
    for t in sorted(pages):
        sc.scrape(t)
    return sc


def test_several_servers_add_up_and_their_means_pool() -> None:
    # a: busy (100 -> 300 requests, 200 items in 50 batches, 1.5 cores); b: nearly idle (10 -> 20,
    # 10 items in 10 batches, 0.25 cores). Both scraped in the same seconds (one tick scrapes all).
    a = _scraped("http://127.0.0.1:8001/metrics", {
        1.0: _server_page(100, 0, (400, 100), 10.0, 2), 3.0: _server_page(200, 5, (500, 130), 13.0, 4),
        5.0: _server_page(300, 1, (600, 150), 16.0, 6)})
    b = _scraped("http://127.0.0.1:8002/metrics", {
        1.0: _server_page(10, 0, (5, 5), 1.0, None), 3.0: _server_page(15, 4, (10, 10), 1.5, None),
        5.0: _server_page(20, 2, (15, 15), 2.0, None)})
    s = server_summary([a, b], t_from=1.0, t_to=5.0)
    assert s is not None
    # counts and CPU are sums (503s count as requests too: every route and status)
    # (300 - 100) x 1.1 and (20 - 10) x 1.1 requests in 4 s
    assert s["requests_rps"] == pytest.approx((220 + 11) / 4)
    assert [r["requests_rps"] for r in s["per_url"]] == pytest.approx([220 / 4, 11 / 4])
    assert s["cpu_cores_mean"] == pytest.approx((16 - 10) / 4 + (2 - 1) / 4)
    assert [r["cpu_cores_mean"] for r in s["per_url"]] == pytest.approx([1.5, 0.25])
    assert s["rejected_total"] == 4  # b exposes asrtk_ metrics but never rejected: 0, not unknown
    # a pooled mean: (200 + 10 items) / (50 + 10 batches) = 3.5; the mean of the two means would be 2.5
    assert s["batch_size_mean"] == pytest.approx(210 / 60)
    # the queue depth of the fleet: the highest total of one second (5 + 4 at t=3), not one server's max
    assert s["queue_depth_max"] == 9
    assert s["scraped"] == [a.url, b.url] and [r["url"] for r in s["per_url"]] == s["scraped"]


def test_a_server_without_a_window_makes_the_fleet_sums_unknown_not_smaller() -> None:
    a = _scraped("http://a/metrics", {1.0: _server_page(100, 0, (4, 1), 10.0, 0),
                                      5.0: _server_page(300, 0, (8, 2), 16.0, 0)})
    late = _scraped("http://b/metrics", {5.0: _server_page(50, 0, (4, 1), 3.0, 0)})  # one scrape: no window
    s = server_summary([a, late], t_from=1.0, t_to=5.0)
    assert s is not None
    assert s["requests_rps"] is None and s["cpu_cores_mean"] is None and s["rejected_total"] is None
    assert s["per_url"][0]["requests_rps"] == pytest.approx(220 / 4) and s["per_url"][1]["requests_rps"] is None
    assert s["batch_size_mean"] == pytest.approx(4 / 1)  # a mean over what was seen is still a mean


def test_without_a_scrape_before_the_window_counts_start_in_it_not_at_server_start() -> None:
    # a long-lived server's counters hold earlier runs: 1000 requests before this one
    sc = _scraped("http://a/metrics", {3.0: _server_page(1000, 0, (4, 1), 50.0, 40),
                                       6.0: _server_page(1100, 0, (8, 2), 53.0, 41)})
    s = server_summary([sc], t_from=2.0, t_to=6.0)
    assert s is not None
    assert s["requests_rps"] == pytest.approx(110 / 3) and s["rejected_total"] == 1
    assert s["cpu_cores_mean"] == pytest.approx(1.0)


def test_a_scrape_url_s_credentials_never_reach_the_results() -> None:
    from toolkit.samplers import cache_server_summary

    sc = _scraped("http://bench:s3cret@127.0.0.1:8001/metrics?token=t0k", {
        1.0: _server_page(1, 0, (1, 1), 1.0, 0) + 'asrtk_cache_requests_total{model="asr",result="hit"} 1\n',
        2.0: _server_page(2, 0, (2, 2), 2.0, 0) + 'asrtk_cache_requests_total{model="asr",result="hit"} 2\n'})
    texts = [str(server_summary([sc], 1.0, 2.0)), str(cache_server_summary([sc], 1.0, 2.0)), str(list(sc.rows()))]
    assert all("127.0.0.1:8001/metrics" in t and "s3cret" not in t and "t0k" not in t for t in texts)


def test_memory_max_is_the_busiest_single_server_inside_the_window() -> None:
    def scraper(values: list[float]) -> PrometheusScraper:
        pages = iter([f"asrtk_process_resident_memory_bytes {v}\n" for v in values])
        sc = PrometheusScraper("http://t/metrics", fetch=lambda url: next(pages))
        for t, _ in enumerate(values):
            sc.scrape(float(t))
        return sc

    a = scraper([9e9, 100.0, 300.0, 200.0, 8e9])  # t=0 and t=4 fall outside [1, 2.4]
    b = scraper([1.0, 250.0, 260.0, 1.0, 1.0])
    s = server_summary([a, b], t_from=1.0, t_to=0.9)
    assert s["memory_max_bytes"] == 300.0  # one server's peak, not a + b
    assert server_summary([scraper([0.0, 0.0])], 0, 1)["memory_max_bytes"] is None
