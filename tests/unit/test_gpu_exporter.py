"""GpuCollector fed with recorded NVML samples: DCGM names, units and labels."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from toolkit.gpu_exporter import METRIC_NAMES, GpuCollector
from toolkit.nvml import GpuSample, NvmlUnavailable

# Recorded from an H100 under load and an idle second GPU that does not report power.
H100 = GpuSample(index=0, name="NVIDIA H100 80GB HBM3", uuid="GPU-4b4f2a9e-1c1d-4c3e-9a2b-0d3f5e6a7b8c",
                 utilization_ratio=0.87, memory_used_bytes=61_440 * 2**20, memory_total_bytes=81_559 * 2**20,
                 power_watts=512.345, sm_clock_hz=1_980e6, temperature_celsius=61.0)
IDLE = GpuSample(index=1, name="NVIDIA A10", uuid="GPU-0000-1", utilization_ratio=0.0,
                 memory_used_bytes=0, memory_total_bytes=24_564 * 2**20, power_watts=None,
                 sm_clock_hz=210e6, temperature_celsius=33.0)


def _scrape(collector: GpuCollector) -> dict[str, list]:
    reg = CollectorRegistry()
    reg.register(collector)
    text = generate_latest(reg).decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_dcgm_names_units_and_labels() -> None:
    fams = _scrape(GpuCollector(lambda: [H100, IDLE], hostname="gpu-a-1"))
    assert set(fams) == set(METRIC_NAMES)
    by_gpu = {name: {s.labels["gpu"]: s for s in samples} for name, samples in fams.items()}
    h = by_gpu["DCGM_FI_DEV_GPU_UTIL"]["0"]
    assert h.labels == {"gpu": "0", "UUID": H100.uuid, "device": "nvidia0",
                        "modelName": "NVIDIA H100 80GB HBM3", "Hostname": "gpu-a-1"}
    assert h.value == 87.0  # percent, as DCGM
    assert by_gpu["DCGM_FI_DEV_FB_USED"]["0"].value == 61_440  # MiB
    assert by_gpu["DCGM_FI_DEV_FB_FREE"]["0"].value == 81_559 - 61_440
    assert by_gpu["DCGM_FI_DEV_POWER_USAGE"]["0"].value == 512.345  # W
    assert by_gpu["DCGM_FI_DEV_SM_CLOCK"]["0"].value == 1980  # MHz
    assert by_gpu["DCGM_FI_DEV_GPU_TEMP"]["1"].value == 33.0
    # a field the device does not support is left out, not reported as 0
    assert set(by_gpu["DCGM_FI_DEV_POWER_USAGE"]) == {"0"}
    assert by_gpu["DCGM_FI_DEV_FB_USED"]["1"].value == 0.0


def test_each_scrape_reads_fresh_samples() -> None:
    readings = iter([[H100], [IDLE]])
    c = GpuCollector(lambda: next(readings), hostname="h")
    reg = CollectorRegistry()
    reg.register(c)
    first = generate_latest(reg).decode()
    second = generate_latest(reg).decode()
    assert 'gpu="0"' in first and 'gpu="1"' not in first
    assert 'gpu="1"' in second and 'gpu="0"' not in second


def test_registration_does_not_touch_nvml_and_driver_loss_exposes_nothing() -> None:
    calls = []

    def gone() -> list[GpuSample]:
        calls.append(1)
        raise NvmlUnavailable("NVIDIA driver is installed but not loaded")

    c = GpuCollector(gone, hostname="h")
    reg = CollectorRegistry()
    reg.register(c)
    assert calls == []
    fams = _scrape(c)
    assert all(samples == [] for samples in fams.values())
    assert calls


def test_served_metrics_need_the_bearer_token() -> None:
    import httpx

    from toolkit.gpu_exporter import serve_metrics

    reg = CollectorRegistry()
    reg.register(GpuCollector(lambda: [H100], hostname="gpu-a-1"))
    server = serve_metrics(reg, "127.0.0.1", 0, "t0ken-ABC")
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        assert httpx.get(url, trust_env=False).status_code == 401
        assert httpx.get(url, headers={"Authorization": "Bearer wrong"}, trust_env=False).status_code == 401
        assert httpx.get(url, headers={"Authorization": "Bearer t0ken-\u00e9".encode()}, trust_env=False).status_code == 401
        r = httpx.get(url, headers={"Authorization": "Bearer t0ken-ABC"}, trust_env=False)
        assert r.status_code == 200 and "DCGM_FI_DEV_GPU_UTIL" in r.text
    finally:
        server.shutdown()


def test_exporter_refuses_to_listen_beyond_loopback_without_a_token(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    from typer.testing import CliRunner

    from toolkit.cli.main import app

    monkeypatch.delenv("ASRTK_EXPORTER_TOKEN", raising=False)
    r = CliRunner().invoke(app, ["gpu-exporter", "--host", "0.0.0.0"])
    assert r.exit_code == 2 and "beyond loopback" in r.output and "--token-file" in r.output
    bad = tmp_path / "token"
    bad.write_text("two words\n")
    r = CliRunner().invoke(app, ["gpu-exporter", "--host", "0.0.0.0", "--token-file", str(bad)])
    assert r.exit_code == 2 and "printable ASCII" in r.output
