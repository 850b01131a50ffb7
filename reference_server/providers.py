"""Which ONNX Runtime execution providers really load on this machine.

``onnxruntime-gpu`` lists CUDA and TensorRT as *available* even where no CUDA
libraries exist; asking for them then logs loud errors and silently falls back to
the CPU. So a provider counts only if a session created with it keeps it.
"""

from __future__ import annotations

import contextlib
import re
import functools
import io
import os
import tempfile
from dataclasses import dataclass
from typing import Iterator


@dataclass(frozen=True)
class ProviderChoice:
    providers: list[str]
    device: str  # "cuda" or "cpu"
    reason: str  # one line: why this provider runs


def _probe_model() -> bytes:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


@contextlib.contextmanager
def _captured_stderr() -> Iterator[list[str]]:
    """Capture fd 2 (ONNX Runtime's C++ logging bypasses Python) into a list of lines."""
    lines: list[str] = []
    py_out = io.StringIO()
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            with contextlib.redirect_stdout(py_out), contextlib.redirect_stderr(py_out):
                yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines.extend(tmp.read().decode(errors="replace").splitlines())
            lines.extend(py_out.getvalue().splitlines())


def _library_error(lines: list[str]) -> str:
    for line in lines:
        m = re.search(r"(lib[\w.+-]+\.so[\w.]*): cannot open shared object file", line)
        if m:
            return f"missing {m.group(1)}"
        if "install TensorRT" in line:
            return "TensorRT libraries not installed"
    return ""


@functools.lru_cache(maxsize=None)
def provider_loads(name: str) -> tuple[bool, str]:
    """(True, "") if a session with provider ``name`` keeps it, else (False, reason)."""
    import onnxruntime as ort

    if name not in ort.get_available_providers():
        return False, f"{name} is not compiled into this onnxruntime build"
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    previous = 2
    ort.set_default_logger_severity(4)
    try:
        with _captured_stderr() as lines:
            sess = ort.InferenceSession(_probe_model(), sess_options=opts, providers=[name])
        kept = name in sess.get_providers()
    except Exception as exc:  # ORT raises plain RuntimeError/Fail subclasses
        return False, f"{name} failed to load: {str(exc).splitlines()[0][:200]}"
    finally:
        ort.set_default_logger_severity(previous)
    if not kept:
        why = _library_error(lines) or "its CUDA libraries or a GPU are missing"
        return False, f"{name} does not load ({why}); ONNX Runtime would fall back to CPU"
    return True, ""


def loadable_providers() -> dict[str, str]:
    """Every provider this build knows, mapped to "" when it loads or the reason it does not."""
    import onnxruntime as ort

    return {p: provider_loads(p)[1] for p in ort.get_available_providers()}


def choose(device: str) -> ProviderChoice:
    """Pick providers for ``device`` = auto | cpu | cuda.

    ``auto`` picks CUDA only when NVML sees a GPU *and* the CUDA provider loads.
    ``cuda`` raises :class:`toolkit.errors.ModelError` when CUDA cannot run.
    """
    from toolkit import nvml
    from toolkit.errors import ModelError, UsageError

    if device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda, got {device!r}")
    if device == "cpu":
        return ProviderChoice(["CPUExecutionProvider"], "cpu", "CPU requested with --device cpu")
    try:
        gpus = nvml.device_count()
        gpu_reason = "" if gpus else "NVML sees no GPU"
    except nvml.NvmlUnavailable as exc:
        gpus, gpu_reason = 0, str(exc)
    cuda_ok, cuda_reason = provider_loads("CUDAExecutionProvider") if gpus else (False, gpu_reason)
    if cuda_ok:
        return ProviderChoice(
            ["CUDAExecutionProvider", "CPUExecutionProvider"], "cuda", f"CUDA provider loaded, {gpus} GPU(s) seen by NVML"
        )
    if device == "cuda":
        raise ModelError(f"--device cuda requested but CUDA cannot run: {cuda_reason}; use --device cpu or auto")
    return ProviderChoice(["CPUExecutionProvider"], "cpu", f"CPU provider ({cuda_reason})")
