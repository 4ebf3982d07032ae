"""caddy.routes_managed against a real Caddy: traffic, idempotency counted in admin mutations,
test=True, rejection and rollback."""

import collections
import copy
import json
import os
import socket
import stat

import pytest

from devstack.http import backend_of, get, serve
from tests.support.consul_dns import ConsulDns


def converge(loaders, test=False):
    return loaders.states.caddy.routes_managed(name="hecate_routes", test=test)


@pytest.fixture
def seeded(make_loaders, local_tree, caddy):
    loaders = make_loaders({"hecate": local_tree})
    result = converge(loaders)
    assert result.result is True, result.comment
    return loaders


def test_converges_from_bare_caddy_and_serves_every_seed_route(seeded, local_tree, caddy, backends):
    http_port = local_tree["reverse_proxy"]["caddy"]["ports"]["http"]
    assert caddy.mutations() == [("POST", "/config/")]  # one reload for all eight routes
    for route in local_tree["reverse_proxy"]["caddy"]["routes"]:
        status, _, body = get(http_port, route["domain"])
        expected = "wazuh-https" if route["backend"].startswith("https://") else route["service"]
        assert (status, backend_of(body)) == (200, expected), route["domain"]


def test_second_run_sends_no_mutation(seeded, caddy):
    before = caddy.mutations()
    result = converge(seeded)
    assert result.result is True and result.changes == {}
    assert caddy.mutations() == before
    assert [r for r in caddy.admin_requests() if r[0] == "GET"][-1:] == [("GET", "/config/")]


def test_dry_run_leaves_config_byte_identical(seeded, local_tree, caddy, make_loaders):
    changed = copy.deepcopy(local_tree)
    changed["reverse_proxy"]["caddy"]["routes"][2]["backend"] = "127.0.0.1:1"
    loaders = make_loaders({"hecate": changed})
    before, mutations = caddy.config_bytes(), caddy.mutations()
    result = converge(loaders, test=True)
    assert result.result is None
    assert "hecate_route_grafana" in result.changes["changed"]
    assert caddy.config_bytes() == before
    assert caddy.mutations() == mutations


def test_fifty_changed_routes_cost_one_reload(caddy, make_loaders, local_tree, backends):
    plain, _ = backends
    port = plain["helen"].port
    tree = copy.deepcopy(local_tree)
    tree["reverse_proxy"]["caddy"]["routes"] = [
        {"domain": f"app{i}.cybermonkey.dev", "backend": f"127.0.0.1:{port}", "service": f"app{i}"} for i in range(50)
    ]
    assert converge(make_loaders({"hecate": tree})).result is True
    for route in tree["reverse_proxy"]["caddy"]["routes"]:
        route["profile"] = "none"
    result = converge(make_loaders({"hecate": tree}))
    assert result.result is True and len(result.changes["changed"]) == 50
    assert caddy.mutations() == [("POST", "/config/")] * 2
    assert get(tree["reverse_proxy"]["caddy"]["ports"]["http"], "app49.cybermonkey.dev", "/.env")[0] == 200  # no profile now


def test_unknown_host_gets_404_not_an_empty_200(seeded, local_tree):
    status, headers, _ = get(local_tree["reverse_proxy"]["caddy"]["ports"]["http"], "unknown.example.net")
    assert status == 404 and headers["x-hecate-route"] == "none"


def test_rejected_config_keeps_old_routes_serving(seeded, local_tree, caddy, make_loaders):
    bad = copy.deepcopy(local_tree)
    # A valid pillar Caddy cannot apply: its new HTTP port is taken (no validator can know that).
    # (A Python-only regexp used to play this part; the validator now refuses it, as Go's RE2 would.)
    taken = socket.create_server(("127.0.0.1", 0))
    bad["reverse_proxy"]["caddy"]["ports"]["http"] = taken.getsockname()[1]
    before = caddy.config_bytes()
    with taken:
        result = converge(make_loaders({"hecate": bad}))
    assert result.result is False
    assert "rejected" in result.comment and result.changes == {}
    assert caddy.config_bytes() == before
    status, _, body = get(local_tree["reverse_proxy"]["caddy"]["ports"]["http"], "cloud.cybermonkey.dev")
    assert (status, backend_of(body)) == (200, "nextcloud")


def test_failed_host_check_restores_the_snapshot(seeded, local_tree, caddy, make_loaders):
    broken = copy.deepcopy(local_tree)
    broken["reverse_proxy"]["caddy"]["routes"][3]["backend"] = "127.0.0.1:9"  # jenkins -> nothing listens
    before = json.loads(caddy.config_bytes())
    result = converge(make_loaders({"hecate": broken}))
    assert result.result is False
    assert "jenkins.cybermonkey.dev" in result.comment and "restored" in result.comment
    assert json.loads(caddy.config_bytes()) == before
    # the rollback is conditional on this run's write: POST /config/ with If-Match (POST /load ignores it)
    assert caddy.mutations()[-2:] == [("POST", "/config/"), ("POST", "/config/")]
    status, _, body = get(local_tree["reverse_proxy"]["caddy"]["ports"]["http"], "jenkins.cybermonkey.dev")
    assert (status, backend_of(body)) == (200, "jenkins")


def test_https_backend_without_skip_verify_is_caught_and_rolled_back(seeded, local_tree, caddy, make_loaders):
    strict = copy.deepcopy(local_tree)
    wazuh = next(r for r in strict["reverse_proxy"]["caddy"]["routes"] if r["service"] == "wazuh")
    wazuh["tls_skip_verify"] = False  # the backend's certificate is self-signed: Caddy must refuse it
    result = converge(make_loaders({"hecate": strict}))
    assert result.result is False and "delphi.cybermonkey.dev" in result.comment
    status, _, body = get(local_tree["reverse_proxy"]["caddy"]["ports"]["http"], "delphi.cybermonkey.dev")
    assert (status, backend_of(body)) == (200, "wazuh-https")


def test_invalid_pillar_touches_nothing(caddy, make_loaders, local_tree):
    bad = copy.deepcopy(local_tree)
    bad["reverse_proxy"]["caddy"]["routes"][0]["backend"] = "ftp://x"
    result = converge(make_loaders({"hecate": bad}))
    assert result.result is False
    assert "hecate:reverse_proxy:caddy:routes[0](hera.cybermonkey.dev):backend" in result.comment
    assert caddy.admin_requests() == []


def test_other_servers_are_left_alone(caddy, make_loaders, local_tree):
    foreign = {"listen": ["127.0.0.1:0"], "routes": [{"@id": "theirs", "handle": [{"handler": "static_response", "body": "x"}]}]}
    loaders = make_loaders({"hecate": local_tree})
    loaders.modules.caddy.load({"admin": {"listen": caddy.admin}, "apps": {"http": {"servers": {"other": foreign}}}})
    assert converge(loaders).result is True
    live = json.loads(caddy.config_bytes())
    assert live["apps"]["http"]["servers"]["other"] == foreign
    shrunk = copy.deepcopy(local_tree)
    del shrunk["reverse_proxy"]["caddy"]["routes"][1:]
    result = converge(make_loaders({"hecate": shrunk}))
    assert sorted(result.changes["removed"]) == sorted(
        f"hecate_route_{r['service']}" for r in local_tree["reverse_proxy"]["caddy"]["routes"][1:]
    )
    live = json.loads(caddy.config_bytes())
    assert live["apps"]["http"]["servers"]["other"] == foreign
    assert [r["@id"] for r in live["apps"]["http"]["servers"]["hecate"]["routes"]] == [
        "hecate_strip_auth_headers",
        "hecate_guard_common",
        "hecate_route_authentik",
        "hecate_catch_all",
    ]


def test_several_backends_are_balanced(caddy, make_loaders, local_tree, backends):
    plain, _ = backends
    tree = copy.deepcopy(local_tree)
    tree["reverse_proxy"]["caddy"]["routes"] = [
        {
            "domain": "pool.cybermonkey.dev",
            "backends": [f"127.0.0.1:{plain['grafana'].port}", f"127.0.0.1:{plain['jenkins'].port}"],
            "lb_policy": "round_robin",
            "health": {"uri": "/", "interval": "1s"},
        }
    ]
    assert converge(make_loaders({"hecate": tree})).result is True
    seen = {backend_of(get(tree["reverse_proxy"]["caddy"]["ports"]["http"], "pool.cybermonkey.dev")[2]) for _ in range(6)}
    assert seen == {"grafana", "jenkins"}


def test_a_failed_runs_rollback_never_overwrites_a_later_runs_committed_config(seeded, local_tree, caddy, make_loaders):
    """Run A writes, its check fails; run B writes and commits before A rolls back: B's config stays."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    later = copy.deepcopy(local_tree)
    later["reverse_proxy"]["caddy"]["routes"][2]["profile"] = "none"  # grafana without the blocking profile
    run_b, results_b = make_loaders({"hecate": later}), []

    class SecondRunDuringCheck(BaseHTTPRequestHandler):
        """A's broken backend: when A's post-write check reaches it, run B to completion, then answer 503."""

        def log_message(self, *args):
            pass

        def do_GET(self):
            if not results_b:
                results_b.append(converge(run_b))
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

    trigger = ThreadingHTTPServer(("127.0.0.1", 0), SecondRunDuringCheck)
    serve(trigger)
    try:
        broken = copy.deepcopy(local_tree)
        broken["reverse_proxy"]["caddy"]["routes"][3]["backend"] = f"127.0.0.1:{trigger.server_address[1]}"  # jenkins
        broken["reverse_proxy"]["caddy"]["verify"] = {"timeout": 120}  # B runs while A's check waits
        result_a = converge(make_loaders({"hecate": broken}))
    finally:
        trigger.shutdown()
        trigger.server_close()
    assert results_b and results_b[0].result is True, results_b and results_b[0].comment
    assert result_a.result is False and "NOT restored" in result_a.comment and "another writer" in result_a.comment
    http_port = local_tree["reverse_proxy"]["caddy"]["ports"]["http"]
    assert get(http_port, "observe.cybermonkey.dev", "/.env")[0] == 200  # B's change is live
    status, _, body = get(http_port, "jenkins.cybermonkey.dev")
    assert (status, backend_of(body)) == (200, "jenkins")
    assert caddy.mutations() == [("POST", "/config/")] * 3  # seed, A, B: A's rollback wrote nothing


def test_a_restore_whose_answer_timed_out_but_happened_is_reported_restored(caddy, local_tree, make_loaders, backends):
    plain, _ = backends
    tree = copy.deepcopy(local_tree)
    tree["reverse_proxy"]["caddy"]["routes"] = [
        {"domain": f"app{i}.cybermonkey.dev", "backend": f"127.0.0.1:{plain['helen'].port}", "service": f"app{i}"} for i in range(300)
    ]  # a reload of 300 routes takes Caddy far longer than the 1 ms we wait for its answer
    loaders = make_loaders({"hecate": tree})
    assert converge(loaders).result is True
    module = loaders.modules.caddy
    snap = module.snapshot()
    written = copy.deepcopy(snap["config"])
    del written["apps"]["http"]["servers"]["hecate"]["routes"][1]
    module.apply(written, snap["etag"])
    before = len(caddy.admin_requests())
    assert module.restore(snap, expect=written, timeout=0.001) is True
    assert json.loads(caddy.config_bytes()) == snap["config"]
    # Counted, not ordered: Caddy serves each connection in its own goroutine, so under load the re-read
    # may be logged before the write it waits for (rawCfgMu) is.
    sent = collections.Counter(caddy.admin_requests()[before:])
    assert sent == {("GET", "/config/"): sent[("GET", "/config/")], ("POST", "/config/"): 1}  # If-Match, not /load
    assert sent[("GET", "/config/")] >= 2  # the live read before the write, and the re-read when no answer came


def test_consul_backends_resolve_through_the_pillars_consul_dns(caddy, make_loaders, local_tree, backends):
    plain, _ = backends
    dns = ConsulDns(["grafana"])
    try:
        tree = copy.deepcopy(local_tree)
        tree["reverse_proxy"]["caddy"]["consul_dns"] = dns.address
        tree["reverse_proxy"]["caddy"]["routes"] = [
            {"domain": "grafana.cybermonkey.dev", "backend": f"consul://grafana:{plain['grafana'].port}", "service": "grafana"}
        ]
        result = converge(make_loaders({"hecate": tree}))
        assert result.result is True, result.comment
        status, _, body = get(tree["reverse_proxy"]["caddy"]["ports"]["http"], "grafana.cybermonkey.dev")
        assert (status, backend_of(body)) == (200, "grafana")
        assert ("grafana.service.consul", 1) in dns.queries  # Caddy asked the pillar's DNS server, not the host's
    finally:
        dns.stop()


def test_a_snapshot_kept_on_the_edge_restores_and_only_the_newest_ten_stay(seeded, local_tree, caddy, make_loaders):
    """A deploy keeps Caddy's snapshot on the edge (``keep=<run id>``) and carries only its path: the
    config itself never crosses Salt (seconds at 1000 routes)."""
    caddy_module = seeded.modules.caddy
    before = json.loads(caddy.config_bytes())
    kept = caddy_module.snapshot(keep="20261202T120000Z-run0")
    assert set(kept) == {"path", "etag"} and kept["path"].endswith("/hecate/snapshots/20261202T120000Z-run0.json")
    assert stat.S_IMODE(os.stat(kept["path"]).st_mode) == 0o600
    # Caddy's answer kept as it came, byte for byte (never decoded and encoded again: 8 MB at 5000 routes)
    with open(kept["path"], encoding="utf-8") as handle:
        assert handle.read().startswith('{"config": ' + caddy.config_bytes().decode().strip() + ", ")
    changed = copy.deepcopy(local_tree)
    changed["reverse_proxy"]["caddy"]["routes"] = changed["reverse_proxy"]["caddy"]["routes"][:2]
    assert converge(make_loaders({"hecate": changed})).result is True and json.loads(caddy.config_bytes()) != before
    assert caddy_module.restore(kept["path"]) is True
    assert json.loads(caddy.config_bytes()) == before
    for run in range(1, 12):
        caddy_module.snapshot(keep=f"20261202T120000Z-run{run}")
    folder = os.path.dirname(kept["path"])
    assert sorted(os.listdir(folder)) == sorted(f"20261202T120000Z-run{run}.json" for run in range(2, 12))
    with pytest.raises(Exception, match="keep="):
        caddy_module.snapshot(keep="../../etc/passwd")
