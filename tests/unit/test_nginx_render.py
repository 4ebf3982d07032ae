"""The nginx renderers: the stream block from hecate:reverse_proxy:nginx:tcp_proxies and the helen-bridge
HTTP proxy, checked by Debian's real ``nginx -t``."""

import pathlib
import shutil
import subprocess

import pytest

from devstack.pillars import seed_tree
from hecatelib.nomad import nginx

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
STREAM_MODULE = pathlib.Path("/usr/lib/nginx/modules/ngx_stream_module.so")  # Debian builds stream as a module


def nginx_test(tmp_path, body):
    """Run ``nginx -t`` on ``body`` wrapped in a minimal main config; returns (ok, output)."""
    modules = [str(STREAM_MODULE)] if "stream {" in body and STREAM_MODULE.exists() else []
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx.render_main(body, pid=str(tmp_path / "nginx.pid"), modules=modules))
    proc = subprocess.run(
        [NGINX, "-t", "-q", "-c", str(conf), "-p", f"{tmp_path}/", "-g", f"error_log {tmp_path}/error.log;"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return proc.returncode == 0, proc.stdout + proc.stderr


def test_seed_tcp_proxies_pass_nginx_t(tmp_path):
    proxies = seed_tree()["reverse_proxy"]["nginx"]["tcp_proxies"]
    body = nginx.render_stream(proxies)
    ok, output = nginx_test(tmp_path, body)
    assert ok, output
    assert "listen 1514 udp;" in body and "listen 1515;" in body
    assert body.count("upstream ") == 4
    assert "transparent" not in body  # the seed's proxy_bind $remote_addr transparent needs CAP_NET_ADMIN + routing


def test_high_ports_tcp_and_udp_on_the_same_port_pass_nginx_t(tmp_path):
    proxies = [
        {"name": "game-tcp", "listen_port": 40001, "backend": "127.0.0.1:50001"},
        {"name": "game-udp", "listen_port": 40001, "backend": "127.0.0.1:50001", "protocol": "udp"},
        {"name": "v6", "listen_port": 40002, "backend": "[::1]:50002", "proxy_timeout": "90s"},
    ]
    body = nginx.render_stream(proxies)
    ok, output = nginx_test(tmp_path, body)
    assert ok, output
    assert "proxy_timeout 90s;" in body and "server [::1]:50002" in body


def test_nginx_t_really_rejects_a_broken_config(tmp_path):
    body = nginx.render_stream([{"name": "a", "listen_port": 40003, "backend": "127.0.0.1:1"}])
    ok, output = nginx_test(tmp_path, body.replace("proxy_pass a;", "proxy_pass a"))
    assert not ok and "test failed" in output


def test_helen_bridge_http_proxy_passes_nginx_t(tmp_path):
    body = nginx.render_http_proxy("100.65.138.128:8009", 8009, "helen.internal")
    ok, output = nginx_test(tmp_path, body)
    assert ok, output
    assert "proxy_set_header Connection $connection_upgrade;" in body  # websockets without forcing upgrade


def test_no_proxies_no_stream_block():
    assert nginx.render_stream([]) == ""
    assert nginx.render_stream(None) == ""


@pytest.mark.parametrize(
    ("proxy", "path", "reason"),
    [
        ({"name": "x", "listen_port": 1, "backend": "10.0.0.1:80; evil"}, ":0:backend", "whitespace"),
        ({"name": "x", "listen_port": 1, "backend": "10.0.0.1:80;include/etc/passwd"}, ":0:backend", "';'"),
        ({"name": "x", "listen_port": 1, "backend": "10.0.0.1"}, ":0:backend", "host:port"),
        ({"name": "x", "listen_port": 1, "backend": "10.0.0.1:70000"}, ":0:backend", "host:port"),
        ({"name": "x y", "listen_port": 1, "backend": "10.0.0.1:80"}, ":0:name", "whitespace"),
        ({"name": "x", "listen_port": 0, "backend": "10.0.0.1:80"}, ":0:listen_port", "not a port"),
        ({"name": "x", "listen_port": True, "backend": "10.0.0.1:80"}, ":0:listen_port", "not a port"),
        ({"name": "x", "listen_port": 1, "backend": "10.0.0.1:80", "protocol": "sctp"}, ":0:protocol", "tcp, udp"),
        ({"name": "x", "listen_port": 1, "backend": "a:1", "proxy_timeout": "soon"}, ":0:proxy_timeout", "nginx time"),
        ({"name": "x", "listen_port": 1, "backend": "a\n:1"}, ":0:backend", "whitespace"),
    ],
)
def test_values_that_could_break_the_file_are_refused_with_their_key_path(proxy, path, reason):
    with pytest.raises(nginx.NginxConfigError) as exc:
        nginx.render_stream([proxy])
    assert exc.value.path == "hecate:reverse_proxy:nginx:tcp_proxies" + path
    assert reason in exc.value.message


def test_duplicates_are_refused():
    base = {"listen_port": 1000, "backend": "10.0.0.1:80"}
    with pytest.raises(nginx.NginxConfigError, match="already used"):
        nginx.render_stream([{"name": "a", **base}, {"name": "b", **base}])
    with pytest.raises(nginx.NginxConfigError, match="duplicate"):
        nginx.render_stream([{"name": "a-b", **base}, {"name": "a_b", "listen_port": 1001, "backend": "10.0.0.1:80"}])


def test_http_proxy_refuses_bad_input():
    with pytest.raises(nginx.NginxConfigError):
        nginx.render_http_proxy("10.0.0.1:80", 8009, "bad name")
    with pytest.raises(nginx.NginxConfigError):
        nginx.render_http_proxy("10.0.0.1:80", 8009, health_path="health")
    with pytest.raises(nginx.NginxConfigError):
        nginx.render_http_proxy("10.0.0.1:80", 0)
