"""Where an nginx configuration sends traffic (pure: text in, data out).

``asrtk bench`` uses it for a target on the load host that turns out to be nginx: the
servers its ``upstream`` blocks list (and literal ``proxy_pass`` addresses) are part of the
target, so their CPU is the target's, not other work on the host, and their ``/metrics`` are
the server metrics. The I/O (finding the nginx master, running ``nginx -T``, reading files)
is :mod:`toolkit.engine.local_target`'s.

The parser reads nginx's own syntax: directives end in ``;``, blocks in ``{ }``, ``#`` starts
a comment where a token could start, quotes (``"``/``'``, backslash escapes) and ``${var}``
hold any character. ``include`` is resolved against the files the caller has (``nginx -T``
prints all of them, each after a ``# configuration file PATH:`` line), with nginx's glob
rules, so a config split over ``conf.d/*.conf`` reads as one tree.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from toolkit.errors import ConfigError
from toolkit.units import is_loopback

MAX_INCLUDE_DEPTH = 16  # nginx itself has no limit; a config that includes itself must stop somewhere
PASS_DIRECTIVES = ("proxy_pass", "grpc_pass")
_DUMP_HEADER = re.compile(r"^# configuration file (.+):\s*$")


@dataclass(frozen=True)
class Directive:
    """One directive: ``name args...;`` or ``name args... { block }`` (``block`` is None for the first)."""

    name: str
    args: tuple[str, ...]
    block: tuple["Directive", ...] | None = None
    file: str = ""
    line: int = 0


@dataclass(frozen=True)
class Upstream:
    """One server nginx proxies to: an ``upstream`` block's ``server`` line, or a literal ``proxy_pass``."""

    host: str
    port: int
    group: str | None  # the upstream block's name; None for a proxy_pass to an address
    backup: bool = False

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{self.port}"

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


@dataclass(frozen=True)
class Proxied:
    """What a config proxies to from one port. ``scoped``: these are what the ``server`` blocks
    listening on that port proxy to; False: every upstream of the config, because no block
    listens there or one proxies to a variable (the safe over-count for a target's CPU)."""

    upstreams: tuple[Upstream, ...]
    scoped: bool


# ------------------------------------------------------------------------------------ parsing


def _tokens(text: str, file: str) -> Iterator[tuple[str, int, bool]]:
    """(token, line, quoted) in order; ``{``, ``}`` and ``;`` are tokens of their own (unquoted)."""
    i, n, line = 0, len(text), 1
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
            i += 1
        elif ch in " \t\r":
            i += 1
        elif ch == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif ch in "{};":
            yield ch, line, False
            i += 1
        elif ch in "\"'":
            start_line, buf, i = line, [], i + 1
            while i < n and text[i] != ch:
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                if text[i] == "\n":
                    line += 1
                buf.append(text[i])
                i += 1
            if i >= n:
                raise ConfigError(f"{file or 'nginx config'}:{start_line}: unterminated {ch} quote")
            i += 1
            yield "".join(buf), start_line, True
        else:
            start_line, buf, var = line, [], False
            while i < n:
                ch = text[i]
                if var:  # inside ${...}: anything up to the closing brace
                    buf.append(ch)
                    var = ch != "}"
                elif ch == "{" and buf and buf[-1] == "$":
                    buf.append(ch)
                    var = True
                elif ch in " \t\r\n{};\"'":
                    break
                elif ch == "\\" and i + 1 < n:
                    buf.append(text[i + 1])
                    i += 1
                else:
                    buf.append(ch)
                i += 1
            yield "".join(buf), start_line, False


def parse(text: str, file: str = "") -> list[Directive]:
    """The directives of one file's text, blocks nested. :class:`ConfigError` (naming the file and
    line) for an unbalanced brace, a directive without its ``;`` or an unterminated quote."""
    stack: list[tuple[list[Directive], str, tuple[str, ...], int]] = []
    current: list[Directive] = []
    words: list[str] = []
    first_line = 0
    where = file or "nginx config"
    for tok, line, quoted in _tokens(text, file):
        if quoted or tok not in "{};":
            if not words:
                first_line = line
            words.append(tok)
        elif tok == ";":
            if not words:
                continue  # a stray ';' is harmless
            current.append(Directive(words[0], tuple(words[1:]), None, file, first_line))
            words = []
        elif tok == "{":
            if not words:
                raise ConfigError(f"{where}:{line}: a block without a directive name before '{{'")
            stack.append((current, words[0], tuple(words[1:]), first_line))
            current, words = [], []
        else:  # "}"
            if words:
                raise ConfigError(f"{where}:{line}: directive {words[0]!r} has no ';' before '}}'")
            if not stack:
                raise ConfigError(f"{where}:{line}: unexpected '}}'")
            parent, name, args, at = stack.pop()
            parent.append(Directive(name, args, tuple(current), file, at))
            current = parent
    if words:
        raise ConfigError(f"{where}: directive {words[0]!r} has no ';' at the end of the file")
    if stack:
        raise ConfigError(f"{where}:{stack[-1][3]}: block {stack[-1][1]!r} is not closed")
    return current


def split_dump(text: str) -> dict[str, str]:
    """``nginx -T``'s output -> {path: text} in the order nginx read the files (the main one first).
    Lines before the first ``# configuration file`` header (nginx's own messages) are dropped."""
    files: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in text.splitlines():
        m = _DUMP_HEADER.match(raw)
        if m:
            current = files.setdefault(m.group(1).strip(), [])
        elif current is not None:
            current.append(raw)
    return {path: "\n".join(lines) + "\n" for path, lines in files.items()}


def include_path(pattern: str, conf_dir: str) -> str:
    """An ``include`` argument as nginx resolves it: absolute, or relative to the main file's directory."""
    return posixpath.normpath(pattern if pattern.startswith("/") else posixpath.join(conf_dir, pattern))


def load(files: Mapping[str, str], main: str, conf_dir: str | None = None) -> list[Directive]:
    """The main file's directives with every ``include`` replaced by the files it names (globs
    matched against ``files``, in sorted order as nginx does; an include matching none of them is
    dropped: ``nginx -T`` lists every file it read). ``conf_dir`` defaults to ``main``'s directory."""
    if main not in files:
        raise ConfigError(f"nginx config {main} was not read")
    base = conf_dir if conf_dir is not None else posixpath.dirname(main)

    def expand(directives: Sequence[Directive], depth: int) -> list[Directive]:
        out: list[Directive] = []
        for d in directives:
            if d.name == "include" and d.block is None and d.args:
                if depth >= MAX_INCLUDE_DEPTH:
                    raise ConfigError(f"{d.file}:{d.line}: includes nest deeper than {MAX_INCLUDE_DEPTH} levels")
                pattern = include_path(d.args[0], base)
                for path in sorted(p for p in files if fnmatch.fnmatchcase(p, pattern)):
                    out.extend(expand(parse(files[path], path), depth + 1))
            elif d.block is not None:
                out.append(Directive(d.name, d.args, tuple(expand(d.block, depth)), d.file, d.line))
            else:
                out.append(d)
        return out

    return expand(parse(files[main], main), 0)


# ------------------------------------------------------------------------------- upstreams


def _walk(directives: Sequence[Directive]) -> Iterator[Directive]:
    for d in directives:
        yield d
        if d.block is not None:
            yield from _walk(d.block)


def split_address(text: str, default_port: int = 80) -> tuple[str, int] | None:
    """``127.0.0.1:8001``, ``[::1]:8001``, ``backend`` (port ``default_port``) -> (host, port);
    None for a unix socket, a variable or a malformed address."""
    text = text.strip()
    if not text or text.startswith("unix:") or "$" in text:
        return None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            return None
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    elif ":" in text:  # a bare IPv6 address (nginx wants brackets; be lenient)
        host, port_text = text, ""
    else:
        host, port_text = text, ""
    if not host:
        return None
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None
    return host, int(port_text)


def upstream_groups(tree: Sequence[Directive]) -> dict[str, list[Upstream]]:
    """Every ``upstream NAME { server ADDRESS [params]; }`` block (http and stream): its servers,
    unix sockets and ``down`` servers left out, ``backup`` ones marked."""
    groups: dict[str, list[Upstream]] = {}
    for d in _walk(tree):
        if d.name != "upstream" or d.block is None or not d.args:
            continue
        servers = groups.setdefault(d.args[0], [])
        for s in d.block:
            if s.name != "server" or s.block is not None or not s.args or "down" in s.args[1:]:
                continue
            hp = split_address(s.args[0])
            if hp is not None:
                servers.append(Upstream(hp[0], hp[1], d.args[0], backup="backup" in s.args[1:]))
    return groups


def _listen_port(arg: str) -> int | None:
    """The port of a ``listen`` argument: ``8080``, ``127.0.0.1:8080``, ``[::1]:8080``, ``*:8080``,
    ``localhost`` (80); None for a unix socket."""
    if arg.startswith("unix:"):
        return None
    if arg.isdigit():
        return int(arg)
    hp = split_address(arg)
    return hp[1] if hp is not None else None


def _server_ports(server: Directive) -> set[int]:
    assert server.block is not None
    listens = [d for d in server.block if d.name == "listen" and d.block is None and d.args]
    if not listens:
        return {80}  # nginx's default listen (8000 when it does not run as root: rare for a front end)
    return {p for d in listens if (p := _listen_port(d.args[0])) is not None}


def _pass_target(arg: str, groups: Mapping[str, list[Upstream]]) -> list[Upstream] | None:
    """What ``proxy_pass`` / ``grpc_pass ARG`` sends to: an upstream group's servers, or one
    address ([] for a unix socket); None when only the running nginx knows (a variable)."""
    scheme, sep, rest = arg.partition("://")
    if not sep:
        scheme, rest = "", arg  # the stream module: proxy_pass NAME or HOST:PORT
    hostport = re.split(r"[/?]", rest, maxsplit=1)[0]
    if not hostport or "$" in hostport:
        return None
    if hostport in groups:
        return list(groups[hostport])
    if hostport.startswith("unix:"):
        return []
    default = 443 if scheme in ("https", "grpcs") else 80
    hp = split_address(hostport, default)
    return [Upstream(hp[0], hp[1], None)] if hp is not None else None


def proxied_from(tree: Sequence[Directive], port: int) -> Proxied:
    """What nginx proxies to from ``port``: the upstreams the ``server`` blocks listening there
    pass to (``proxy_pass`` / ``grpc_pass``, in any nested location). Every upstream group of
    the config instead (``scoped`` False) when no server block listens on ``port``, or one
    that does passes to something only the running nginx knows (a variable). A server block
    that passes nothing (static files, ``return``) proxies to nothing. Duplicates are dropped,
    order kept."""
    groups = upstream_groups(tree)
    found: list[Upstream] = []
    matched = unresolved = False
    for d in _walk(tree):
        if d.name != "server" or d.block is None or port not in _server_ports(d):
            continue
        matched = True
        for p in _walk(d.block):
            if p.name in PASS_DIRECTIVES and p.block is None and p.args:
                target = _pass_target(p.args[0], groups)
                if target is None:
                    unresolved = True
                else:
                    found.extend(target)
    scoped = matched and not unresolved
    if not scoped:
        found += [u for servers in groups.values() for u in servers]
    seen: set[tuple[str, int]] = set()
    unique = []
    for u in found:
        if (u.host, u.port) not in seen:
            seen.add((u.host, u.port))
            unique.append(u)
    return Proxied(tuple(unique), scoped)


# ----------------------------------------------------------------------------- nginx itself


@dataclass(frozen=True)
class NginxCommand:
    """How an nginx master was started: the binary and its ``-p`` / ``-c`` (None: the built-in default)."""

    binary: str
    prefix: str | None
    conf: str | None


def master_command(cmdline: Sequence[str]) -> NginxCommand | None:
    """An nginx master's command line as psutil reads it -> :class:`NginxCommand`; None when it is
    not an nginx master. nginx rewrites its ``argv`` to ``nginx: master process /usr/sbin/nginx -c
    ...`` (one string, which psutil splits on spaces); an untouched ``argv`` works too."""
    words = [w for part in cmdline for w in part.split(" ") if w]
    if words[:3] == ["nginx:", "master", "process"]:
        words = words[3:]
    elif words[:1] == ["nginx:"]:
        return None  # a worker, cache manager, ...
    if not words or posixpath.basename(words[0]) != "nginx":
        return None
    prefix = conf = None
    i = 1
    while i < len(words):
        w = words[i]
        for flag in ("-p", "-c"):
            if w == flag and i + 1 < len(words):
                value, i = words[i + 1], i + 1
            elif w.startswith(flag) and len(w) > 2:
                value = w[2:]
            else:
                continue
            if flag == "-p":
                prefix = value
            else:
                conf = value
            break
        i += 1
    return NginxCommand(words[0], prefix, conf)


def compiled_defaults(version_text: str) -> tuple[str | None, str | None]:
    """(``--prefix``, ``--conf-path``) from ``nginx -V``'s configure arguments (None where absent)."""
    def arg(name: str) -> str | None:
        m = re.search(rf"--{name}=(\S+)", version_text)
        return m.group(1) if m else None

    return arg("prefix"), arg("conf-path")


def conf_path(cmd: NginxCommand, cwd: str, default_prefix: str | None, default_conf: str | None) -> tuple[str, str]:
    """(prefix, main config file) as that master resolved them: ``-p`` relative to its working
    directory, ``-c`` relative to the prefix (nginx's own rules); the compiled-in defaults else."""
    prefix = cmd.prefix or default_prefix or "/usr/share/nginx/"
    prefix = posixpath.normpath(posixpath.join(cwd, prefix))
    conf = cmd.conf or default_conf or "/etc/nginx/nginx.conf"
    return prefix, posixpath.normpath(posixpath.join(prefix, conf))
