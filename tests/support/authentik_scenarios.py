"""The authentik scenarios hecate must converge, shared by the emulator tests and the opt-in tests against
a real authentik (tests/functional/test_authentik_real.py): pillar trees, the sls that runs
``protected_routes`` under the state engine, and the changes of a route's groups that must converge in one
run and re-run with zero writes."""

SLS = """
authentik_ready:
  test.succeed_without_changes: []
protect:
  authentik.protected_routes:
    - require:
      - test: authentik_ready
"""

# (what changes, groups before -> groups after), each from a converged route
GROUP_CHANGES = (
    ("reorder", ["a", "b"], ["b", "a"]),
    ("change", ["a", "b"], ["b", "c"]),
    ("append", ["a", "b"], ["a", "b", "c"]),
    ("drop the first", ["a", "b", "c"], ["b", "c"]),
    ("replace all", ["a", "b"], ["c"]),
    ("to any signed-in user", ["a", "b"], []),
)


def tree(url, token, routes, prefix, **authentik):
    return {
        "global": {"domain": "example.org"},
        "reverse_proxy": {"caddy": {"tls": {"mode": "off"}, "routes": routes}},
        "authentik": {
            "url": url,
            "token": token,
            "allow_insecure_endpoint": True,
            "name_prefix": prefix,
            "outpost": {"upstream": "127.0.0.1:9"},
            **authentik,
        },
    }


def route(service, groups=None, **auth):
    spec = {"groups": groups} if groups is not None else {}
    spec.update(auth)
    return {"domain": f"{service}.example.org", "backend": "127.0.0.1:9", "service": service, "auth": spec or True}
