"""Caddy JSON (as ``caddy adapt`` prints it) -> hecate pillar, pure: what maps, what is reported, what changes meaning."""

import copy
import re

import pytest

from devstack.pillars import seed_tree
from hecatelib import schema
from hecatelib.caddy import caddyfile
from hecatelib.caddy import config as caddy_config

SECURITY = [
    {"match": [{"header": {"Cf-Worker": ["*"], "Cf-Ray": ["*"]}}], "handle": [{"handler": "static_response", "status_code": 404}]},
    {
        "match": [{"path": ["/.env", "/wp-admin/*"], "path_regexp": {"name": "scanners", "pattern": r"(/vendor/|\.bak$|\?rest_route=)"}}],
        "handle": [{"handler": "static_response", "status_code": 404}],
    },
    {
        "match": [{"header": {"User-Agent": ["Go-http-client/1.1"]}, "header_regexp": {"User-Agent": {"pattern": "(?i)(sqlmap|nikto)"}}}],
        "handle": [{"handler": "static_response", "status_code": 444}],
    },
]
COMMON = [
    {"handle": [{"handler": "headers", "response": {"set": {"X-Frame-Options": ["SAMEORIGIN"]}}}]},
    {"handle": [{"handler": "encode", "encodings": {"gzip": {}}, "prefer": ["gzip"]}]},
]


def site(host, proxy, inner=None, route_id=None):
    route = {
        "match": [{"host": host if isinstance(host, list) else [host]}],
        "handle": [{"handler": "subroute", "routes": [*(inner or []), {"handle": [proxy]}]}],
        "terminal": True,
    }
    if route_id:
        route["@id"] = route_id
    return route


def proxy(*dials, **extra):
    return {"handler": "reverse_proxy", "upstreams": [{"dial": d} for d in dials], **extra}


def config(*routes, **top):
    return {"apps": {"http": {"servers": {"srv0": {"listen": [":443"], "routes": list(routes)}}}}, **top}


def imported(cfg, text=None):
    return caddyfile.to_pillar(cfg, text)


def caddy_of(result):
    return result["pillar"]["hecate"]["reverse_proxy"]["caddy"]


def test_plain_site_becomes_a_route_with_service_from_the_first_label():
    result = imported(config(site("grafana.example.org", proxy("10.0.0.5:3000"))))
    assert caddy_of(result)["routes"] == [
        {"domain": "grafana.example.org", "backend": "10.0.0.5:3000", "service": "grafana", "profile": "none"}
    ]
    assert result["unmapped"] == [] and result["notes"] == []
    schema.validate(result["pillar"]["hecate"])


def test_service_comes_from_the_comment_above_the_site():
    text = "# Grafana (metrics) - the dashboards\nobserve.example.org {\n  reverse_proxy 10.0.0.5:3000\n}\n"
    result = imported(config(site("observe.example.org", proxy("10.0.0.5:3000"))), text)
    assert caddy_of(result)["routes"][0]["service"] == "grafana"


def test_tls_upstream_becomes_https_backend_and_skip_verify_is_kept():
    tls = proxy("10.0.0.9:443", transport={"protocol": "http", "tls": {"insecure_skip_verify": True}})
    other = proxy("10.0.0.8:8443", transport={"protocol": "http", "tls": {}})
    result = imported(config(site("a.example.org", tls), site("b.example.org", other)))
    routes = {r["domain"]: r for r in caddy_of(result)["routes"]}
    assert routes["a.example.org"]["backend"] == "https://10.0.0.9"
    assert routes["a.example.org"]["tls_skip_verify"] is True
    assert routes["b.example.org"]["backend"] == "https://10.0.0.8:8443"
    assert "tls_skip_verify" not in routes["b.example.org"]
    compiled = caddy_config.bootstrap_config(schema.validate(result["pillar"]["hecate"]))
    route = caddy_config.owned_routes(compiled)["hecate_route_a"]
    assert route["handle"][0]["routes"][-1]["handle"][-1]["transport"] == {"protocol": "http", "tls": {"insecure_skip_verify": True}}


def test_several_upstreams_lb_policy_and_active_health():
    handler = proxy(
        "10.0.0.1:80",
        "10.0.0.2:80",
        load_balancing={"selection_policy": {"policy": "least_conn"}},
        health_checks={"active": {"uri": "/health", "interval": 15_000_000_000, "timeout": 2_000_000_000, "expect_status": 204}},
    )
    route = caddy_of(imported(config(site("lb.example.org", handler))))["routes"][0]
    assert route["backends"] == ["10.0.0.1:80", "10.0.0.2:80"]
    assert route["lb_policy"] == "least_conn"
    assert route["health"] == {"uri": "/health", "interval": "15s", "timeout": "2s", "status": 204}


def test_snippet_rules_become_one_named_profile_shared_by_sites():
    text = "(common) {\n  encode gzip\n}\na.example.org {\n  import common\n  reverse_proxy 10.0.0.1:1\n}\n"
    inner = [*COMMON, *SECURITY]
    result = imported(config(site("a.example.org", proxy("10.0.0.1:1"), inner), site("b.example.org", proxy("10.0.0.2:1"), inner)), text)
    caddy = caddy_of(result)
    assert list(caddy["profiles"]) == ["common-2"]  # "common" is hecate's built-in profile: never overwritten
    profile = caddy["profiles"]["common-2"]
    assert {r["profile"] for r in caddy["routes"]} == {"common-2"}
    assert profile["block_headers"] == ["Cf-Ray", "Cf-Worker"]
    assert profile["block_paths"] == ["/.env", "/wp-admin/*"]
    assert profile["block_path_regexp"] == r"(/vendor/|\.bak$)"
    assert profile["block_query_params"] == ["rest_route"]
    assert profile["headers"] == {"X-Frame-Options": "SAMEORIGIN"}
    assert profile["encode"] == ["gzip"]
    agents = re.compile(profile["block_user_agents"])
    assert agents.search("Go-http-client/1.1") and agents.search("SQLMap/1.0") and not agents.search("Mozilla/5.0")
    schema.validate(result["pillar"]["hecate"])


def test_changes_of_meaning_are_reported_once_with_every_site():
    inner = [*COMMON, *SECURITY]
    result = imported(config(site("a.example.org", proxy("10.0.0.1:1"), inner), site("b.example.org", proxy("10.0.0.2:1"), inner)))
    notes = "\n".join(result["notes"])
    assert "ANDs path + path_regexp" in notes and "ANDs header + header_regexp" in notes
    assert "444" in notes and "?rest_route=" in notes
    assert len(result["notes"]) == 4
    assert all("2 sites (a.example.org; b.example.org)" in n for n in result["notes"])


def test_other_statuses_are_reported_as_404():
    inner = [{"match": [{"query": {"debug": ["*"]}}], "handle": [{"handler": "static_response", "status_code": 403}]}]
    result = imported(config(site("a.example.org", proxy("10.0.0.1:1"), inner)))
    assert caddy_of(result)["profiles"]["imported"] == {"block_query_params": ["debug"]}
    assert result["notes"] == ["a.example.org: blocked requests got 403; hecate answers 404"]


@pytest.mark.parametrize(
    ("handler", "expected"),
    [
        ({"handler": "file_server", "root": "/srv"}, "handler file_server"),
        ({"handler": "rewrite", "uri": "/x"}, "handler rewrite"),
        ({"handler": "headers", "request": {"set": {"X-A": ["1"]}}}, "header operations other than setting a response header"),
        ({"handler": "encode", "encodings": {"br": {}}}, "encodings br"),
    ],
)
def test_unknown_handlers_are_listed_not_dropped(handler, expected):
    cfg = config(site("a.example.org", proxy("10.0.0.1:1"), [{"handle": [handler]}]))
    result = imported(cfg)
    assert any(expected in line and line.startswith("a.example.org: ") for line in result["unmapped"]), result["unmapped"]
    assert caddy_of(result)["routes"][0]["domain"] == "a.example.org"


def test_reverse_proxy_options_hecate_does_not_model_are_listed():
    handler = proxy("10.0.0.1:1", headers={"request": {"set": {"X-Real-IP": ["{remote_host}"]}}}, flush_interval=-1)
    result = imported(config(site("a.example.org", handler)))
    assert any("reverse_proxy headers" in line for line in result["unmapped"])
    assert any("reverse_proxy flush_interval" in line for line in result["unmapped"])


def test_sites_that_are_not_a_proxy_are_not_imported_and_say_why():
    static = {
        "match": [{"host": ["files.example.org"]}],
        "handle": [{"handler": "subroute", "routes": [{"handle": [{"handler": "file_server"}]}]}],
    }
    split = {
        "match": [{"host": ["split.example.org"]}],
        "handle": [{"handler": "subroute", "routes": [
            {"match": [{"path": ["/api/*"]}], "handle": [{"handler": "subroute", "routes": [{"handle": [proxy("10.0.0.3:80")]}]}]},
            {"handle": [proxy("10.0.0.4:80")]},
        ]}],
    }  # fmt: skip
    pathy = {"match": [{"host": ["p.example.org"], "path": ["/x/*"]}], "handle": [proxy("10.0.0.5:80")]}
    result = imported(config(static, split, pathy))
    assert caddy_of(result)["routes"] == []
    text = "\n".join(result["unmapped"])
    assert "files.example.org: not imported: no reverse_proxy" in text
    assert "split.example.org: not imported: a reverse_proxy behind a path matcher" in text
    assert "p.example.org: not imported: the site matches more than the host (path)" in text


def test_global_options_and_log_blocks_are_listed():
    cfg = config(
        site("a.example.org", proxy("10.0.0.1:1")),
        admin={"listen": "0.0.0.0:2019"},
        storage={"module": "file_system", "root": "/data"},
        logging={"logs": {"default": {"writer": {"output": "file", "filename": "/var/log/caddy/access.log"}, "level": "INFO"},
                          "log0": {"writer": {"output": "file", "filename": "/var/log/a.log"}, "include": ["http.log.access.log0"]}}},
    )  # fmt: skip
    cfg["apps"]["http"]["servers"]["srv0"]["logs"] = {"logger_names": {"a.example.org": ["log0"]}}
    cfg["apps"]["pki"] = {"certificate_authorities": {}}
    result = imported(cfg)
    text = "\n".join(result["unmapped"])
    assert "global options: admin" in text and "0.0.0.0:2019" in text
    assert "global options: storage" in text
    assert "global options: log (file /var/log/caddy/access.log, INFO)" in text
    assert "a.example.org: log (file /var/log/a.log)" in text
    assert "global options: apps.pki" in text


def test_tls_email_and_internal_issuer_map_to_the_tls_settings():
    cfg = config(site("a.example.org", proxy("10.0.0.1:1")))
    cfg["apps"]["tls"] = {
        "automation": {"policies": [{"subjects": ["a.example.org"], "issuers": [{"module": "acme", "email": "ops@example.org"}]}]}
    }
    assert caddy_of(imported(cfg))["tls"] == {"mode": "acme", "email": "ops@example.org"}
    cfg["apps"]["tls"] = {"automation": {"policies": [{"subjects": ["a.example.org"], "issuers": [{"module": "internal"}]}]}}
    assert caddy_of(imported(cfg))["tls"] == {"mode": "internal"}


def test_other_listen_ports_are_reported():
    cfg = config(site("a.example.org", proxy("10.0.0.1:1")))
    cfg["apps"]["http"]["servers"]["srv1"] = {"listen": [":8443"], "routes": [site("b.example.org", proxy("10.0.0.2:1"))]}
    result = imported(cfg)
    assert any(line.startswith("server srv1: listens on :8443") for line in result["unmapped"])
    assert [r["domain"] for r in caddy_of(result)["routes"]] == ["a.example.org", "b.example.org"]


def test_one_site_with_several_hosts_gets_one_route_per_host():
    result = imported(config(site(["a.example.org", "b.example.org"], proxy("10.0.0.1:1"))))
    routes = caddy_of(result)["routes"]
    assert [(r["domain"], r["service"]) for r in routes] == [("a.example.org", "a"), ("b.example.org", "b")]
    assert any("one hecate route per host" in n for n in result["notes"])


def test_colliding_service_names_fall_back_to_unique_ones():
    text = "# App\na.example.org {\n}\n# App\nb.example.org {\n}\n"
    result = imported(config(site("a.example.org", proxy("10.0.0.1:1")), site("b.example.org", proxy("10.0.0.2:1"))), text)
    assert [r["service"] for r in caddy_of(result)["routes"]] == ["app", "b"]
    schema.validate(result["pillar"]["hecate"])


def test_consul_dynamic_upstreams_map_back():
    handler = {"handler": "reverse_proxy", "dynamic_upstreams": {"source": "a", "name": "web.service.consul", "port": "8080"}}
    route = caddy_of(imported(config(site("a.example.org", handler))))["routes"][0]
    assert route["backend"] == "consul://web:8080"


def test_a_config_hecate_compiled_imports_back_to_the_same_routes():
    tree = schema.validate(seed_tree())
    compiled = caddy_config.bootstrap_config(tree)
    result = imported(compiled)
    routes = caddy_of(result)["routes"]
    want = tree["reverse_proxy"]["caddy"]["routes"]
    assert [(r["domain"], r.get("backend"), r["service"], r.get("tls_skip_verify", False)) for r in routes] == [
        (r["domain"], r["backend"], r["service"], r["tls_skip_verify"]) for r in want
    ]
    profile = caddy_of(result)["profiles"]["imported"]
    common = schema.COMMON_PROFILE
    for key in ("block_headers", "block_paths", "block_path_regexp", "block_query_params", "block_user_agents", "encode", "headers"):
        assert profile[key] == common[key], key
    reimported = schema.validate(result["pillar"]["hecate"])
    assert caddy_config.owned_routes(caddy_config.bootstrap_config(reimported)).keys() == caddy_config.owned_routes(compiled).keys()


def test_scan_finds_comments_imports_and_commented_out_sites():
    text = """{
    email a@b.c
}
(snip) {
    encode gzip
}
# Mattermost
#https://chat.example.org {
#    reverse_proxy 10.0.0.1:1
#}
# Cloud storage
https://cloud.example.org:443, files.example.org {
    import snip  # inline comment
    reverse_proxy 10.0.0.2:1 {
        header_up Host {host}
    }
}

# after a blank line
api.example.org {
    reverse_proxy "10.0.0.3:1"
}
"""
    scan = caddyfile.scan_caddyfile(text)
    assert scan["commented_out"] == ["chat.example.org"]
    assert scan["sites"]["cloud.example.org"]["comment"] == "Cloud storage"
    assert scan["sites"]["cloud.example.org"]["imports"] == ["snip"]
    assert scan["sites"]["files.example.org"] is scan["sites"]["cloud.example.org"]
    assert scan["sites"]["api.example.org"]["comment"] == "after a blank line"
    assert "snip" not in scan["sites"] and "{" not in scan["sites"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Grafana", "grafana"), ("Minio API (S3API)", "minio-api"), ("Wazuh Web UI (Delphi) - Key for demo", "wazuh-web-ui"),
     ("U Page", "u-page"), ("!!!", ""), ("", "")],
)  # fmt: skip
def test_slug(text, expected):
    assert caddyfile.slug(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(15_000_000_000, "15s"), (120_000_000_000, "2m"), (3_600_000_000_000, "1h"), (500_000_000, "500ms"), ("10s", "10s")],
)
def test_duration(value, expected):
    assert caddyfile.duration(value) == expected


def test_query_branches_leave_the_path_regexp_and_the_rest_still_compiles():
    site_ = caddyfile._Site(["a"], "a")
    mapper = caddyfile._Mapper({}, "")
    mapper.path_regexp(r"(/(a|b)/|\.(sql|bak)$|\?rest_route=|\?p=)", site_)
    assert site_.profile["block_query_params"] == ["rest_route", "p"]
    assert site_.path_patterns == [r"(/(a|b)/|\.(sql|bak)$)"]
    re.compile(site_.path_patterns[0])


def test_yaml_lists_what_was_not_imported_on_top():
    cfg = config(site("a.example.org", proxy("10.0.0.1:1"), [{"handle": [{"handler": "file_server"}]}]))
    result = imported(copy.deepcopy(cfg))
    text = caddyfile.to_yaml(result, "/etc/caddy/Caddyfile")
    head, _, body = text.partition("hecate:")
    assert "# NOT imported" in head and "handler file_server" in head
    import yaml

    assert yaml.safe_load("hecate:" + body) == result["pillar"]
