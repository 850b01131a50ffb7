"""What this machine can run: the data behind ``asrtk doctor``.

It is a report, not a gate: every probe catches its own failure and says why.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

PACKAGES = (
    "typer", "rich", "httpx", "locust", "nvidia-ml-py", "psutil", "prometheus-client",
    "onnxruntime-gpu", "onnxruntime", "onnx", "numpy", "pyyaml", "soundfile", "fastapi",
    "uvicorn", "hdrhistogram", "plotly",
)

# tool -> (command printing its version, regex picking the version out of stdout+stderr)
TOOLS: dict[str, tuple[list[str], str]] = {
    "nginx": (["nginx", "-v"], r"nginx/([\w.]+)"),
    "promtool": (["promtool", "--version"], r"version ([\w.+~-]+)"),
    "prometheus": (["prometheus", "--version"], r"version ([\w.+~-]+)"),
    "espeak-ng": (["espeak-ng", "--version"], r"text-to-speech: ([\w.]+)"),
    "sox": (["sox", "--version"], r"v([\d.]+)"),
}


@dataclass
class Report:
    python: str
    platform: str
    cpu_cores: int
    memory_bytes: int | None
    packages: dict[str, str | None]
    providers: dict[str, str]  # provider -> "" if it loads, else the reason
    gpus: list[dict] = field(default_factory=list)
    gpu_reason: str | None = None
    driver: str | None = None
    tools: dict[str, dict] = field(default_factory=dict)
    cache_dir: str = ""

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def tool_version(cmd: list[str], pattern: str, timeout_s: float = 5.0) -> dict:
    """{"path", "version"} of a command-line tool, or {"path": None, "reason"}."""
    path = shutil.which(cmd[0]) or (f"/usr/sbin/{cmd[0]}" if os.path.exists(f"/usr/sbin/{cmd[0]}") else None)
    if path is None:
        return {"path": None, "version": None, "reason": "not installed (apt-get install " + cmd[0] + ")"}
    try:
        proc = subprocess.run([path, *cmd[1:]], capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"path": path, "version": None, "reason": f"failed to run: {exc}"}
    m = re.search(pattern, proc.stdout + proc.stderr)
    return {"path": path, "version": m.group(1) if m else None, "reason": None if m else "version not recognised"}


def collect() -> Report:
    import psutil

    from reference_server import providers
    from toolkit import nvml
    from toolkit.paths import cache_dir

    report = Report(
        python=sys.version.split()[0],
        platform=f"{platform.system()} {platform.release()} {platform.machine()}",
        cpu_cores=os.cpu_count() or 1,
        memory_bytes=int(psutil.virtual_memory().total),
        packages=package_versions(),
        providers=providers.loadable_providers(),
        cache_dir=str(cache_dir()),
    )
    try:
        report.gpus = [s.__dict__ for s in nvml.sample_all()]
        report.driver = nvml.driver_version()
        if not report.gpus:
            report.gpu_reason = "NVML works but sees no GPU"
    except nvml.NvmlUnavailable as exc:
        report.gpu_reason = str(exc)
    report.tools = {name: tool_version(cmd, pat) for name, (cmd, pat) in TOOLS.items()}
    return report
