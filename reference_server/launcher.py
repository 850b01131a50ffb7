"""EmbeddedServer: run the reference server as a subprocess and wait until it is ready.

The server always runs in its own process (and session): Locust monkey-patches the
calling process with gevent, and an asyncio server must never share it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from toolkit.errors import TargetError

_LISTEN_RE = re.compile(r"listening on http://(\S+):(\d+)")


class EmbeddedServer:
    """``with EmbeddedServer("tiny") as srv: httpx.get(srv.url + "/health")``.

    The server's stdout and stderr go to ``log_path`` (a temp file by default), never
    to the parent's stdout. ``port=0`` lets the server bind a free port; ``url`` holds
    the real one once :meth:`start` returns.
    """

    def __init__(
        self,
        preset: str = "tiny",
        workers: int = 1,
        extra_args: Sequence[str] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        ready_timeout_s: float = 60.0,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.preset = preset
        self.workers = workers
        self.extra_args = list(extra_args)
        self.host = host
        self.port = port
        self.ready_timeout_s = ready_timeout_s
        self.env = dict(env) if env is not None else None
        self._own_log = log_path is None
        if log_path is None:
            fd, name = tempfile.mkstemp(prefix="asrtk-server-", suffix=".log")
            os.close(fd)
            log_path = Path(name)
        self.log_path = Path(log_path)
        self.url = ""
        self.pid = 0
        self._proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "reference_server",
            "--model", self.preset, "--workers", str(self.workers),
            "--host", self.host, "--port", str(self.port),
            *self.extra_args,
        ]

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _fail(self, why: str) -> TargetError:
        tail = self.log_tail()
        self.stop(timeout_s=5.0)
        return TargetError(f"reference server {why}; log {self.log_path}:\n{tail}")

    def start(self) -> "EmbeddedServer":
        import httpx

        if self._proc is not None:
            raise TargetError("EmbeddedServer already started; call stop() first")
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        # a source checkout that is not pip-installed still starts, from any working directory
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True,
            )
        self.pid = self._proc.pid
        deadline = time.monotonic() + self.ready_timeout_s
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while True:
                code = self._proc.poll()
                if code is not None:
                    raise self._fail(f"exited with code {code} before it was ready")
                if not self.url:
                    m = _LISTEN_RE.search(self.log_tail(200))
                    if m:
                        host = m.group(1)
                        self.url = f"http://{'[' + host + ']' if ':' in host else host}:{m.group(2)}"
                if self.url:
                    try:
                        if client.get(self.url + "/ready").status_code == 200:
                            return self
                    except httpx.HTTPError:
                        pass
                if time.monotonic() > deadline:
                    raise self._fail(f"not ready after {self.ready_timeout_s:.0f} s")
                time.sleep(0.1)

    def send_signal(self, sig: int = signal.SIGTERM) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(sig)

    def wait(self, timeout_s: float) -> int:
        """Wait for the process to exit on its own; raises subprocess.TimeoutExpired."""
        assert self._proc is not None
        return self._proc.wait(timeout=timeout_s)

    def stop(self, timeout_s: float = 15.0) -> int:
        """SIGTERM (graceful drain), then SIGKILL to the whole process group; returns the exit code."""
        proc = self._proc
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # stragglers: worker processes of a dead supervisor
        except (ProcessLookupError, PermissionError):
            pass
        code = proc.wait(timeout=10.0)
        self._proc = None
        return code

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> "EmbeddedServer":
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        if self._own_log and exc_type is None:
            self.log_path.unlink(missing_ok=True)
