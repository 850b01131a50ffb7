import pytest

from reference_server import providers
from toolkit import nvml
from toolkit.errors import ModelError, UsageError


def _gpu_present() -> bool:
    try:
        return nvml.device_count() > 0 and providers.provider_loads("CUDAExecutionProvider")[0]
    except nvml.NvmlUnavailable:
        return False


def test_cpu_provider_always_loads() -> None:
    assert providers.provider_loads("CPUExecutionProvider") == (True, "")


def test_device_cpu_is_cpu() -> None:
    choice = providers.choose("cpu")
    assert choice.providers == ["CPUExecutionProvider"] and choice.device == "cpu"


def test_auto_matches_hardware() -> None:
    choice = providers.choose("auto")
    assert choice.device == ("cuda" if _gpu_present() else "cpu")
    assert choice.reason


def test_cuda_without_gpu_is_a_clear_error() -> None:
    if _gpu_present():
        pytest.skip("a GPU is present")
    with pytest.raises(ModelError, match="--device cuda"):
        providers.choose("cuda")


def test_unknown_device_is_usage_error() -> None:
    with pytest.raises(UsageError):
        providers.choose("tpu")
