"""Reading NVIDIA GPUs through NVML (``nvidia-ml-py``, module ``pynvml``).

On a machine without the NVIDIA driver ``nvmlInit`` raises
``NVMLError_LibraryNotFound``; that is the normal case in CI and is reported as a
reason, not an error. Everything here is a thin I/O seam: callers get plain data.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

_lock = threading.Lock()
_initialised = False


@dataclass(frozen=True)
class GpuSample:
    """One reading of one GPU. Units are in the field names."""

    index: int
    name: str
    uuid: str
    utilization_ratio: float | None
    memory_used_bytes: int | None
    memory_total_bytes: int | None
    power_watts: float | None
    sm_clock_hz: float | None
    temperature_celsius: float | None


class NvmlUnavailable(Exception):
    """NVML cannot be used here; ``str(exc)`` is the exact reason."""


def init() -> None:
    """Initialise NVML once per process, or raise :class:`NvmlUnavailable` with the reason."""
    global _initialised
    with _lock:
        if _initialised:
            return
        try:
            import pynvml
        except ImportError as exc:  # pragma: no cover - it is a dependency
            raise NvmlUnavailable(f"nvidia-ml-py is not installed ({exc})") from exc
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError_LibraryNotFound as exc:
            raise NvmlUnavailable(
                "NVML library not found (libnvidia-ml.so): no NVIDIA driver on this machine"
            ) from exc
        except pynvml.NVMLError_DriverNotLoaded as exc:
            raise NvmlUnavailable("NVIDIA driver is installed but not loaded") from exc
        except pynvml.NVMLError as exc:
            raise NvmlUnavailable(f"NVML failed to initialise: {exc}") from exc
        _initialised = True


def device_count() -> int:
    """Number of GPUs NVML sees; raises :class:`NvmlUnavailable` when NVML cannot run."""
    import pynvml

    init()
    return int(pynvml.nvmlDeviceGetCount())


def _opt(fn, *args):
    import pynvml

    try:
        return fn(*args)
    except pynvml.NVMLError:
        return None


def sample_all() -> list[GpuSample]:
    """Read every GPU once. Metrics a device does not support come back as None."""
    import pynvml

    init()
    samples = []
    for i in range(pynvml.nvmlDeviceGetCount()):
        h = pynvml.nvmlDeviceGetHandleByIndex(i)
        name = _opt(pynvml.nvmlDeviceGetName, h)
        if isinstance(name, bytes):
            name = name.decode()
        uuid = _opt(pynvml.nvmlDeviceGetUUID, h)
        if isinstance(uuid, bytes):
            uuid = uuid.decode()
        util = _opt(pynvml.nvmlDeviceGetUtilizationRates, h)
        mem = _opt(pynvml.nvmlDeviceGetMemoryInfo, h)
        power_mw = _opt(pynvml.nvmlDeviceGetPowerUsage, h)
        sm_mhz = _opt(pynvml.nvmlDeviceGetClockInfo, h, pynvml.NVML_CLOCK_SM)
        temp = _opt(pynvml.nvmlDeviceGetTemperature, h, pynvml.NVML_TEMPERATURE_GPU)
        samples.append(
            GpuSample(
                index=i,
                name=str(name or f"gpu{i}"),
                uuid=str(uuid or f"GPU-{i}"),
                utilization_ratio=None if util is None else util.gpu / 100.0,
                memory_used_bytes=None if mem is None else int(mem.used),
                memory_total_bytes=None if mem is None else int(mem.total),
                power_watts=None if power_mw is None else power_mw / 1000.0,
                sm_clock_hz=None if sm_mhz is None else sm_mhz * 1e6,
                temperature_celsius=None if temp is None else float(temp),
            )
        )
    return samples


def driver_version() -> str | None:
    import pynvml

    init()
    v = _opt(pynvml.nvmlSystemGetDriverVersion)
    return v.decode() if isinstance(v, bytes) else v
