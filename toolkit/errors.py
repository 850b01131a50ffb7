"""asrtk's exception tree, in one place.

Every error the CLI can show derives from :class:`AsrtkError`; its ``exit_code`` is
what the process exits with (0 ok, 1 runtime failure, 2 bad usage or config,
3 an SLO / gate / threshold breached, 4 inconclusive: noise, a disturbed host or unlike
conditions make a verdict impossible). Library errors are translated at the
boundary with ``raise SomeAsrtkError(...) from exc``.
"""

from __future__ import annotations


class AsrtkError(Exception):
    """Base class. The message is one line that names the problem and the fix."""

    exit_code = 1


class UsageError(AsrtkError):
    """A flag or argument is wrong."""

    exit_code = 2


class ConfigError(AsrtkError):
    """A scenario, plan or other input file is malformed or inconsistent."""

    exit_code = 2


class NoDataError(ConfigError):
    """Data a command needs (capacity measurements, results) is missing."""


class TargetError(AsrtkError):
    """The target deployment cannot be reached or misbehaves before load starts."""


class ModelError(AsrtkError):
    """A model cannot be built, loaded or does not follow its contract."""


class GpuUnavailable(AsrtkError):
    """No NVIDIA GPU can be read through NVML (no driver, no library, no device)."""


class ThresholdBreached(AsrtkError):
    """An SLO, gate or threshold failed; CI keys on this exit code."""

    exit_code = 3


class Inconclusive(AsrtkError):
    """No verdict is possible: noise, a disturbed host or unlike conditions; CI can tell it apart."""

    exit_code = 4
