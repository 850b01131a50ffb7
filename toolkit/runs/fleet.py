"""An embedded fleet on loopback: the real nginx, with the config ``asrtk generate nginx`` writes,
in front of N reference servers (``asrtk drill``'s default target).

Every process is started here and stopped here by its own PID (a server by
:class:`~reference_server.launcher.EmbeddedServer`, nginx by its master's PID): nothing is
ever killed by name. Replicas listen on fixed loopback ports chosen at start, so one that is
killed or restarted comes back where nginx expects it.

nginx runs under a temporary prefix (``nginx -p DIR -c nginx.conf -e error.log``); the
wrapper around the generated ``asrtk.conf`` adds one access-log format
(:data:`toolkit.drills.logs.ACCESS_LOG_FORMAT`) that records, per request, every upstream
nginx tried and what each answered: that is how a drill sees whom nginx sent what, and when.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.errors import TargetError, UsageError

NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")


def find_nginx() -> str:
    """Path of the nginx binary; :class:`UsageError` naming the fix when there is none."""
    found = shutil.which("nginx") or next((p for p in NGINX_CANDIDATES if os.path.exists(p)), None)
    if found is None:
        raise UsageError("asrtk drill's embedded fleet needs nginx (apt-get install nginx), or give --target URL")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Replica:
    """One reference server of the fleet: where it listens and the process serving there now."""

    name: str
    port: int
    backup: bool = False
    server: Any = None  # reference_server.launcher.EmbeddedServer while one runs
    log_dir: Path | None = None
    starts: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def pid(self) -> int:
        return int(self.server.pid) if self.server is not None and self.server.running else 0


@dataclass
class FleetConfig:
    replicas: int = 3
    backups: int = 1
    preset: str = "tiny"
    server_args: list[str] = field(default_factory=list)  # e.g. --threads 1 --max-queue 8
    ready_timeout_s: float = 60.0


class EmbeddedFleet:
    """``start()`` the replicas, ``start_nginx(conf_text)`` in front of them, ``stop()`` all.

    Fault injection acts on one replica by its PID: :meth:`kill` (SIGKILL), :meth:`terminate`
    (SIGTERM, waits for the drained exit), :meth:`freeze` / :meth:`thaw` (SIGSTOP / SIGCONT),
    :meth:`restart` (a new server on the same port, waits for ``/ready``).
    """

    def __init__(self, cfg: FleetConfig, work_dir: Path) -> None:
        if cfg.replicas < 2:
            raise UsageError(f"--replicas must be >= 2 (one may be a backup), got {cfg.replicas}")
        if not 0 <= cfg.backups < cfg.replicas:
            raise UsageError(f"--backups must be between 0 and {cfg.replicas - 1}, got {cfg.backups}")
        self.cfg = cfg
        self.dir = Path(work_dir)
        self.replicas: list[Replica] = []
        self.nginx_bin = find_nginx()
        self.nginx_dir = self.dir / "nginx"
        self.nginx_port = 0
        self._nginx: subprocess.Popen[bytes] | None = None
        self.startup_s: list[float] = []

    # -- replicas -------------------------------------------------------------------------
    def start(self) -> None:
        n, b = self.cfg.replicas, self.cfg.backups
        self.replicas = [Replica(name=f"replica-{i + 1}", port=free_port(), backup=i >= n - b,
                                 log_dir=self.dir / "servers") for i in range(n)]
        for r in self.replicas:
            self._start(r)

    @property
    def primaries(self) -> list[Replica]:
        return [r for r in self.replicas if not r.backup]

    def _start(self, r: Replica) -> None:
        from reference_server.launcher import EmbeddedServer

        assert r.log_dir is not None
        r.log_dir.mkdir(parents=True, exist_ok=True)
        r.starts += 1
        log = r.log_dir / f"{r.name}.{r.starts}.log"
        srv = EmbeddedServer(self.cfg.preset, workers=1, extra_args=self.cfg.server_args, port=r.port,
                             ready_timeout_s=self.cfg.ready_timeout_s, log_path=log)
        t = time.monotonic()
        r.server = srv  # before start(): whatever interrupts it, stop() finds the process
        try:
            srv.start()  # raises TargetError with the log's tail
        except BaseException:
            srv.stop(timeout_s=5.0)
            r.server = None
            raise
        self.startup_s.append(time.monotonic() - t)

    def restart(self, r: Replica) -> None:
        """Start a new server where ``r`` listened (the old one must be gone) and wait for /ready."""
        if r.server is not None and r.server.running:
            raise TargetError(f"{r.name} (pid {r.pid}) is still running; stop it before a restart")
        self._start(r)

    def kill(self, r: Replica) -> None:
        """SIGKILL: no drain, connections reset by the kernel."""
        pid = r.pid
        if pid:
            os.kill(pid, signal.SIGKILL)
            r.server.wait(timeout_s=10.0)
        if r.server is not None:
            r.server.stop(timeout_s=1.0)  # reaps it; nothing left to signal
            r.server = None

    def terminate(self, r: Replica, timeout_s: float = 60.0) -> int:
        """SIGTERM (the server drains, then exits 0); returns the exit code."""
        if r.server is None:
            return 0
        code = r.server.stop(timeout_s=timeout_s)
        r.server = None
        return code

    def freeze(self, r: Replica) -> None:
        if r.pid:
            os.kill(r.pid, signal.SIGSTOP)

    def thaw(self, r: Replica) -> None:
        if r.pid:
            os.kill(r.pid, signal.SIGCONT)

    def pids(self) -> list[int]:
        """The processes serving now: nginx's master (its workers are its children) and every running replica."""
        nginx = [self._nginx.pid] if self._nginx is not None and self._nginx.poll() is None else []
        return nginx + [r.pid for r in self.replicas if r.pid]

    def rss_bytes(self) -> dict[str, int | None]:
        """Resident memory of every running replica (None where none runs)."""
        import psutil

        out: dict[str, int | None] = {}
        for r in self.replicas:
            try:
                out[r.name] = int(psutil.Process(r.pid).memory_info().rss) if r.pid else None
            except (psutil.Error, OSError):
                out[r.name] = None
        return out

    # -- nginx ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.nginx_port}"

    @property
    def access_log(self) -> Path:
        return self.nginx_dir / "access.log"

    @property
    def error_log(self) -> Path:
        return self.nginx_dir / "error.log"

    def write_nginx(self, conf_text: str, wrapper_text: str) -> None:
        """Write ``asrtk.conf`` and the wrapper and check them with ``nginx -t`` (any warning fails)."""
        self.nginx_dir.mkdir(parents=True, exist_ok=True)
        (self.nginx_dir / "asrtk.conf").write_text(conf_text)
        (self.nginx_dir / "nginx.conf").write_text(wrapper_text)
        r = subprocess.run([self.nginx_bin, "-t", "-p", str(self.nginx_dir), "-c", "nginx.conf", "-e", "error.log"],
                           capture_output=True, text=True, timeout=30)
        out = (r.stdout + r.stderr).strip()
        if r.returncode != 0 or any(level in out for level in ("[warn]", "[emerg]", "[alert]", "[crit]")):
            raise TargetError(f"nginx -t refused the generated config ({self.nginx_dir}): {out.splitlines()[-1:]}")

    def start_nginx(self, listen_port: int) -> None:
        self.nginx_port = listen_port
        self._nginx = subprocess.Popen(
            [self.nginx_bin, "-p", str(self.nginx_dir), "-c", "nginx.conf", "-e", "error.log", "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True)
        import httpx

        deadline = time.monotonic() + 15.0
        with httpx.Client(timeout=1.0, trust_env=False) as client:
            while True:
                try:
                    if client.get(self.url + "/healthz").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if self._nginx.poll() is not None:
                    raise TargetError(f"nginx exited with code {self._nginx.returncode}; see {self.error_log}")
                if time.monotonic() > deadline:
                    raise TargetError(f"nginx did not answer /healthz within 15 s; see {self.error_log}")
                time.sleep(0.05)

    def stop_nginx(self) -> None:
        proc, self._nginx = self._nginx, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGQUIT)  # graceful: finish what is in flight
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: the master and its workers
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait(timeout=5)

    # -- all --------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop nginx and every replica (a frozen one is thawed first so it can drain)."""
        self.stop_nginx()
        for r in self.replicas:
            if r.server is not None:
                self.thaw(r)
                r.server.stop(timeout_s=10.0)
                r.server = None
