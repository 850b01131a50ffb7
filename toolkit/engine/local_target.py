"""Which processes on this host are the target, and how bench knows (psutil, ``nginx -T``).

The process listening on a loopback target's port is the target (the embedded server's pid
as well). When that process is nginx, the servers it proxies to that listen on loopback are
the target too: bench reads the running master's configuration (``nginx -T`` with the
master's own ``-p`` / ``-c``; the files themselves when ``nginx -T`` cannot run) and
:mod:`toolkit.nginxconf` says where it sends traffic. ``--target-pids`` adds processes by hand.

Every process is recorded with how it was found, so the summary can say what "the target's
CPU" covered. Nothing here signals or changes a process; it reads ``/proc`` and runs
``nginx -T`` (a test of the config, with its errors to stderr, never to the master's log).
"""

from __future__ import annotations

import glob
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from toolkit import nginxconf
from toolkit.errors import ConfigError, UsageError
from toolkit.units import is_loopback

NGINX_T_TIMEOUT_S = 15.0
MAX_CONF_FILES = 256
MAX_CONF_BYTES = 4 << 20


@dataclass(frozen=True)
class TargetProcess:
    pid: int
    name: str
    found_by: str  # "listening on port 8080", "nginx upstream 127.0.0.1:8001 from /etc/nginx/nginx.conf", ...


@dataclass
class LocalTarget:
    """The target's processes on this host (roots: their children count too), the loopback
    servers a local nginx proxies to, and what could not be found (``notes``, one line each)."""

    processes: list[TargetProcess] = field(default_factory=list)
    nginx_conf: str | None = None  # the nginx config the upstreams were read from
    upstreams: list[str] = field(default_factory=list)  # loopback HOST:PORT a local nginx proxies to
    notes: list[str] = field(default_factory=list)

    @property
    def pids(self) -> list[int]:
        return sorted({p.pid for p in self.processes})

    def upstream_metrics_urls(self) -> list[str]:
        return [f"http://{a}/metrics" for a in self.upstreams]

    def as_summary(self) -> dict[str, Any]:
        """``summary.json``'s ``target.local``."""
        return {"processes": [{"pid": p.pid, "name": p.name, "found_by": p.found_by} for p in self.processes],
                "nginx_conf": self.nginx_conf, "upstreams": list(self.upstreams), "notes": list(self.notes)}


def _name(pid: int) -> str:
    import psutil

    try:
        return psutil.Process(pid).name()
    except (psutil.Error, OSError):
        return "?"


def _self_and_parents() -> set[int]:
    import psutil

    try:
        me = psutil.Process(os.getpid())
        return {me.pid} | {p.pid for p in me.parents()}
    except (psutil.Error, OSError):
        return {os.getpid()}


def check_pids(pids: Sequence[int], flag: str = "--target-pids") -> None:
    """Every pid names a process on this host that is neither this process nor one of its
    ancestors (its tree would count the load generator as the target): :class:`UsageError` else."""
    if not pids:
        return
    import psutil

    mine = _self_and_parents()
    for pid in pids:
        if not psutil.pid_exists(pid):
            raise UsageError(f"{flag}: no process {pid} on this host; give the pid of a target process (ps, pgrep)")
        if pid in mine:
            raise UsageError(f"{flag}: {pid} is asrtk bench itself or one of its parents, whose process tree "
                             f"holds the load generator; give the target's own pids")


def discover(base_url: str, server: Any = None, extra_pids: Sequence[int] = ()) -> LocalTarget:
    """The processes that are the target of ``base_url`` on this host (see the module doc).
    A remote target has none but ``extra_pids``."""
    from toolkit.engine.probe import local_target_pids
    from toolkit.samplers import listening_pids

    found = LocalTarget()
    seen: set[int] = set()
    mine = _self_and_parents()

    def add(pid: int, how: str) -> None:
        if pid in mine:  # its tree holds the load generator: counting it would count the load twice
            found.notes.append(f"pid {pid} ({how}) is asrtk bench or one of its parents: not counted as the target")
        elif pid not in seen:
            seen.add(pid)
            found.processes.append(TargetProcess(pid, _name(pid), how))

    parts = urlsplit(base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    listeners = listening_pids(port) if parts.hostname and is_loopback(parts.hostname) else []
    master = _nginx_master(listeners)
    if master is not None:
        # psutil names one holder of a shared listening socket (a worker, say): the master's
        # tree covers every worker, the ones started later included
        add(master.pid, f"nginx master, listening on port {port}")
        seen.update(_children(master))
    for pid in listeners:
        add(pid, f"listening on port {port}")
    if server is not None:
        for pid in local_target_pids(base_url, server):
            add(pid, "the embedded reference server")
    if master is not None:
        _add_upstreams(found, master, port, add, listening_pids)
    check_pids(extra_pids)
    for pid in extra_pids:
        add(pid, "--target-pids")
    return found


def _children(proc: Any) -> set[int]:
    import psutil

    try:
        return {c.pid for c in proc.children(recursive=True)}
    except (psutil.Error, OSError):
        return set()


def _nginx_master(pids: Sequence[int]) -> Any:
    """The nginx master among the processes listening on the port (a worker leads to its master)."""
    import psutil

    for pid in pids:
        try:
            p = psutil.Process(pid)
            if p.name() != "nginx":
                continue
            parent = p.parent()
            if parent is not None and parent.name() == "nginx":
                p = parent
            if nginxconf.master_command(p.cmdline()) is not None:
                return p
        except (psutil.Error, OSError):
            continue
    return None


def _add_upstreams(found: LocalTarget, master: Any, port: int, add: Any, listening_pids: Any) -> None:
    try:
        files, main = read_config(master)
        tree = nginxconf.load(files, main)
    except (ConfigError, OSError) as exc:
        found.notes.append(f"nginx pid {master.pid}: its upstreams are not counted as the target ({exc})")
        return
    found.nginx_conf = main
    proxied = nginxconf.proxied_from(tree, port)
    if not proxied.scoped and proxied.upstreams:
        found.notes.append(f"{main}: no server block listens on port {port}, or one proxies to a variable; "
                           f"every upstream of the config is counted as the target")
    for u in proxied.upstreams:
        if not u.loopback:
            continue
        found.upstreams.append(u.address)
        pids = listening_pids(u.port)
        if not pids:
            found.notes.append(f"nginx upstream {u.address}: nothing listens there now")
        for pid in pids:
            add(pid, f"nginx upstream {u.address} from {main}")
    remote = [u.address for u in proxied.upstreams if not u.loopback]
    if remote:
        found.notes.append(f"nginx upstreams on other hosts are not measured here: {', '.join(remote)}")


def read_config(master: Any) -> tuple[dict[str, str], str]:
    """({path: text}, main path) of a running nginx master's configuration: what ``nginx -T``
    prints with the master's own binary, ``-p`` and ``-c``; the files read here when that fails
    (an nginx older than 1.19.5 has no ``-e stderr``; a config it cannot test as this user)."""
    cmd = nginxconf.master_command(master.cmdline())
    if cmd is None:
        raise ConfigError(f"pid {master.pid} is not an nginx master")
    try:
        binary = master.exe() or cmd.binary
    except Exception:  # noqa: BLE001 - psutil.AccessDenied: fall back to what the command line says
        binary = cmd.binary
    try:
        cwd = master.cwd()
    except Exception:  # noqa: BLE001
        cwd = "/"
    args = [binary, "-T", "-q", "-e", "stderr"]
    if cmd.prefix:
        args += ["-p", cmd.prefix]
    if cmd.conf:
        args += ["-c", cmd.conf]
    try:
        r = subprocess.run(args, capture_output=True, text=True, timeout=NGINX_T_TIMEOUT_S, cwd=cwd, check=False)
        if r.returncode == 0:
            files = nginxconf.split_dump(r.stdout)
            if files:
                return files, next(iter(files))
    except (OSError, subprocess.TimeoutExpired):
        pass
    default_prefix = default_conf = None
    try:
        v = subprocess.run([binary, "-V"], capture_output=True, text=True, timeout=NGINX_T_TIMEOUT_S, check=False)
        default_prefix, default_conf = nginxconf.compiled_defaults(v.stdout + v.stderr)
    except (OSError, subprocess.TimeoutExpired):
        pass
    _prefix, main = nginxconf.conf_path(cmd, cwd, default_prefix, default_conf)
    return read_files(main), main


def read_files(main: str) -> dict[str, str]:
    """The main config file and every file its ``include`` lines name (globs, recursively), read here."""
    conf_dir = os.path.dirname(main)
    files: dict[str, str] = {}
    todo = [main]
    while todo:
        path = todo.pop(0)
        if path in files:
            continue
        if len(files) >= MAX_CONF_FILES:
            raise ConfigError(f"{main}: more than {MAX_CONF_FILES} included files")
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read(MAX_CONF_BYTES)
        files[path] = text
        for d in _includes(nginxconf.parse(text, path)):
            todo.extend(sorted(glob.glob(nginxconf.include_path(d, conf_dir))))
    return files


def _includes(tree: Sequence[nginxconf.Directive]) -> list[str]:
    out = []
    for d in tree:
        if d.name == "include" and d.block is None and d.args:
            out.append(d.args[0])
        elif d.block is not None:
            out.extend(_includes(d.block))
    return out
