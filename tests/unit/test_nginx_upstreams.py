"""Where an nginx config sends traffic (``toolkit.nginxconf``, pure), and reading a running
master's config files (``toolkit.engine.local_target.read_config``'s fallback, on tmp files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolkit import nginxconf as N
from toolkit.errors import ConfigError
from toolkit.generators import nginx as gen
from toolkit.generators import spec as S


def _addresses(p: N.Proxied) -> list[str]:
    return [u.address for u in p.upstreams]


# -- the tokenizer and the tree ------------------------------------------------------------------


def test_directives_blocks_comments_and_quotes() -> None:
    tree = N.parse('''
        # a comment; with { braces }
        worker_processes 2;  # trailing comment
        http {
            log_format main '$remote_addr "$request" {x};';
            map $http_upgrade $conn { default upgrade; '' close; }
            server { listen 8080; location / { return 200 "a;b}#c"; } }
            set $x a#b;
            set ${y}z 1;
        }
    ''', "t.conf")
    assert [d.name for d in tree] == ["worker_processes", "http"]
    assert tree[0].args == ("2",) and tree[0].line == 3 and tree[0].file == "t.conf"
    http = tree[1].block
    assert http is not None
    assert http[0].args == ("main", '$remote_addr "$request" {x};')  # quoted: braces and ';' are text
    assert [(d.name, d.args) for d in http[1].block or ()] == [("default", ("upgrade",)), ("", ("close",))]
    loc = http[2].block[1]  # type: ignore[index]
    assert loc.name == "location" and loc.block[0].args == ("200", "a;b}#c")  # type: ignore[index]
    assert http[3].args == ("$x", "a#b")  # '#' inside a word is not a comment
    assert http[4].args == ("${y}z", "1")  # ${var}: braces of a variable, not a block


@pytest.mark.parametrize("text, needle", [
    ("http { server { listen 80; }", "t.conf:1: block 'http' is not closed"),
    ("listen 80; }", "t.conf:1: unexpected '}'"),
    ("http { listen 80 }", "directive 'listen' has no ';' before '}'"),
    ("worker_processes 2", "directive 'worker_processes' has no ';' at the end of the file"),
    ("return 200 'open", "t.conf:1: unterminated ' quote"),
])
def test_a_broken_config_names_file_line_and_problem(text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        N.parse(text, "t.conf")


# -- upstreams -------------------------------------------------------------------------------------


def test_upstream_servers_with_their_parameters() -> None:
    tree = N.parse("""
        upstream asr {
            least_conn;
            zone asr 64k;
            server 127.0.0.1:8001 weight=3 max_fails=3 fail_timeout=10s;
            server [::1]:8002;
            server localhost;                  # port 80
            server gpu-3.internal:8000 backup;
            server 127.0.0.1:8004 down;        # never sent anything: not the target
            server unix:/run/asr.sock;         # no port to look up
            keepalive 16;
        }
    """)
    servers = N.upstream_groups(tree)["asr"]
    assert [(u.address, u.backup, u.loopback) for u in servers] == [
        ("127.0.0.1:8001", False, True), ("[::1]:8002", False, True), ("localhost:80", False, True),
        ("gpu-3.internal:8000", True, False)]
    assert {u.group for u in servers} == {"asr"}


def test_the_generated_config_proxies_to_the_plan_s_servers() -> None:
    """What `asrtk generate nginx` writes: one upstream, /metrics 404, the servers scoped by listen."""
    spec = S.from_flags(["127.0.0.1:8001:3", "127.0.0.1:8002", "[::1]:8003"], target_qps=50).with_overrides(
        listen="127.0.0.1:18080")
    tree = N.parse(gen.render(spec))
    p = N.proxied_from(tree, 18080)
    assert p.scoped is True
    assert _addresses(p) == ["127.0.0.1:8001", "127.0.0.1:8002", "[::1]:8003"]
    assert {u.group for u in p.upstreams} == {"asrtk_backend"}


SITES = """
upstream api  { server 127.0.0.1:9001; server 127.0.0.1:9002; }
upstream grpc { server 127.0.0.1:9100; }
upstream other { server 127.0.0.1:9200; }
server {
    listen 127.0.0.1:8080;
    location /v1/ { proxy_pass http://api/v1/; }
    location /direct { proxy_pass http://127.0.0.1:9300; }
    location /tls { proxy_pass https://localhost; }
    location /sock { proxy_pass http://unix:/run/x.sock:/; }
}
server { listen [::]:8443 ssl; location / { grpc_pass grpc://grpc; } }
server { listen 80; root /var/www; }
server { listen 8181; location / { proxy_pass http://$backend; } }
"""


@pytest.mark.parametrize("port, scoped, addresses", [
    (8080, True, ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9300", "localhost:443"]),
    (8443, True, ["127.0.0.1:9100"]),
    (80, True, []),  # a static site proxies to nothing
    # a variable: only the running nginx knows, so every upstream counts (and a note says so)
    (8181, False, ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9100", "127.0.0.1:9200"]),
    # no server block listens there: this config may not be what serves it; every upstream
    (9999, False, ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9100", "127.0.0.1:9200"]),
])
def test_only_what_the_target_port_proxies_to_counts(port: int, scoped: bool, addresses: list[str]) -> None:
    p = N.proxied_from(N.parse(SITES), port)
    assert (p.scoped, _addresses(p)) == (scoped, addresses)


def test_a_server_block_without_listen_is_on_port_80_and_stream_blocks_count() -> None:
    tree = N.parse("""
        http { server { location / { proxy_pass http://127.0.0.1:7001; } } }
        stream { upstream db { server 127.0.0.1:5432; } server { listen 6432; proxy_pass db; } }
    """)
    assert _addresses(N.proxied_from(tree, 80)) == ["127.0.0.1:7001"]
    assert _addresses(N.proxied_from(tree, 6432)) == ["127.0.0.1:5432"]


def test_an_upstream_named_twice_is_listed_once() -> None:
    tree = N.parse("upstream a { server 127.0.0.1:1; }\n"
                   "server { listen 81; location /x { proxy_pass http://a; } location /y { proxy_pass http://a/y; } }")
    assert _addresses(N.proxied_from(tree, 81)) == ["127.0.0.1:1"]


@pytest.mark.parametrize("text, want", [
    ("127.0.0.1:8001", ("127.0.0.1", 8001)), ("[::1]:9", ("::1", 9)), ("backend", ("backend", 80)),
    ("::1", ("::1", 80)), ("unix:/x.sock", None), ("$host:80", None), ("h:0", None), ("h:99999", None),
    ("h:x", None), ("[::1]x", None),
])
def test_split_address(text: str, want: tuple[str, int] | None) -> None:
    assert N.split_address(text) == want


# -- nginx -T and include ------------------------------------------------------------------------

DUMP = """nginx: [warn] the "user" directive makes sense only if the master process runs with super-user privileges
# configuration file /etc/nginx/nginx.conf:
events {}
http {
    include /etc/nginx/conf.d/*.conf;
    include sites/*.conf;
}

# configuration file /etc/nginx/conf.d/b.conf:
upstream b { server 127.0.0.1:8102; }

# configuration file /etc/nginx/conf.d/a.conf:
upstream a { server 127.0.0.1:8101; }
server { listen 8080; location / { proxy_pass http://a; } location /b { proxy_pass http://b; } }

# configuration file /etc/nginx/sites/x.conf:
server { listen 8181; location / { include /etc/nginx/snippets/proxy.conf; } }

# configuration file /etc/nginx/snippets/proxy.conf:
proxy_pass http://127.0.0.1:8103;
"""


def test_nginx_t_output_reads_as_one_tree_with_includes_in_place() -> None:
    files = N.split_dump(DUMP)
    assert list(files) == ["/etc/nginx/nginx.conf", "/etc/nginx/conf.d/b.conf", "/etc/nginx/conf.d/a.conf",
                           "/etc/nginx/sites/x.conf", "/etc/nginx/snippets/proxy.conf"]
    assert "[warn]" not in "".join(files.values())  # nginx's own messages before the first file
    tree = N.load(files, "/etc/nginx/nginx.conf")
    # conf.d/*.conf in sorted order, as nginx includes them (a before b)
    assert list(N.upstream_groups(tree)) == ["a", "b"]
    assert _addresses(N.proxied_from(tree, 8080)) == ["127.0.0.1:8101", "127.0.0.1:8102"]
    # an include inside a location (relative includes resolve against the main file's directory)
    assert _addresses(N.proxied_from(tree, 8181)) == ["127.0.0.1:8103"]


def test_a_config_that_includes_itself_stops() -> None:
    with pytest.raises(ConfigError, match="includes nest deeper than 16 levels"):
        N.load({"/n.conf": "include /n.conf;"}, "/n.conf")
    with pytest.raises(ConfigError, match="was not read"):
        N.load({}, "/n.conf")


# -- the master's command line -------------------------------------------------------------------


@pytest.mark.parametrize("cmdline, want", [
    # nginx rewrites argv into one string padded with NULs: psutil gives [title, '', '', ...]
    (["nginx: master process /usr/sbin/nginx -p /srv/lb -c nginx.conf -e error.log -g daemon off;", "", ""],
     N.NginxCommand("/usr/sbin/nginx", "/srv/lb", "nginx.conf")),
    (["nginx: master process /usr/sbin/nginx -g daemon on; master_process on;"],
     N.NginxCommand("/usr/sbin/nginx", None, None)),
    (["/usr/local/sbin/nginx", "-c/etc/lb.conf", "-p/srv/"], N.NginxCommand("/usr/local/sbin/nginx", "/srv/", "/etc/lb.conf")),
    (["nginx: worker process", "", ""], None),
    (["python3", "-m", "reference_server"], None),
])
def test_master_command(cmdline: list[str], want: N.NginxCommand | None) -> None:
    assert N.master_command(cmdline) == want


def test_conf_path_follows_nginx_s_rules() -> None:
    version = "nginx version: nginx/1.22.1\nconfigure arguments: --with-cc-opt='-g' --prefix=/usr/share/nginx " \
              "--conf-path=/etc/nginx/nginx.conf --http-log-path=/var/log/nginx/access.log"
    prefix, conf = N.compiled_defaults(version)
    assert (prefix, conf) == ("/usr/share/nginx", "/etc/nginx/nginx.conf")
    # -c relative to the prefix, a relative -p relative to the master's working directory
    assert N.conf_path(N.NginxCommand("nginx", "lb", "nginx.conf"), "/home/me", prefix, conf) == (
        "/home/me/lb", "/home/me/lb/nginx.conf")
    assert N.conf_path(N.NginxCommand("nginx", None, None), "/", prefix, conf) == (
        "/usr/share/nginx", "/etc/nginx/nginx.conf")


# -- reading the files when nginx -T cannot run --------------------------------------------------


class _Master:
    """What read_config asks a psutil.Process: an nginx whose binary is gone (so nginx -T fails)."""

    pid = 4242

    def __init__(self, cwd: Path) -> None:
        self._cwd = cwd

    def cmdline(self) -> list[str]:
        return ["nginx: master process /nonexistent/nginx -p lb -c nginx.conf", ""]

    def exe(self) -> str:
        return "/nonexistent/nginx"

    def cwd(self) -> str:
        return str(self._cwd)


def test_without_nginx_t_the_files_are_read_with_their_includes(tmp_path: Path) -> None:
    from toolkit.engine.local_target import read_config

    lb = tmp_path / "lb"
    (lb / "conf.d").mkdir(parents=True)
    (lb / "nginx.conf").write_text("events {}\nhttp { include conf.d/*.conf; }\n")
    (lb / "conf.d" / "up.conf").write_text("upstream u { server 127.0.0.1:8001; server 127.0.0.1:8002; }\n"
                                           "server { listen 9000; location / { proxy_pass http://u; } }\n")
    (lb / "conf.d" / "ignored.txt").write_text("this is { not a config")
    files, main = read_config(_Master(tmp_path))
    assert main == str(lb / "nginx.conf")
    assert sorted(files) == [str(lb / "conf.d" / "up.conf"), main]
    assert _addresses(N.proxied_from(N.load(files, main), 9000)) == ["127.0.0.1:8001", "127.0.0.1:8002"]
