"""Pillars for the local stack: the user's seed pillar rendered as Salt would, and variants pointed at local backends."""

import copy

from devstack import SEED as SEED_DIR
from hecatelib import cli

SEED = SEED_DIR / "hecate.sls"


def seed_tree():
    """The seed's ``hecate`` tree, exactly as the user wrote it (its vault calls rendered to strings)."""
    return cli.render_sls(SEED)["hecate"]


def local_seed_tree(backends, https_backend_port, ports, admin, tls_mode="off"):
    """The seed pillar with every backend pointed at a local server and Caddy on test ports.

    ``backends``: service -> port of a local HTTP backend. The seed's https backend (wazuh) goes to
    ``https://127.0.0.1:<https_backend_port>`` with its ``tls_skip_verify: true`` as in the seed; the
    seed's hostname backend (``hecate-server-1:9000``) keeps its hostname shape as ``localhost:<port>``.
    """
    tree = copy.deepcopy(seed_tree())
    caddy = tree["reverse_proxy"]["caddy"]
    caddy["ports"] = dict(ports)
    caddy["admin"] = admin
    caddy["tls"] = {"mode": tls_mode}
    caddy["bind"] = ["127.0.0.1"]  # tests listen on loopback only
    for route in caddy["routes"]:
        if route["backend"].startswith("https://"):
            route["backend"] = f"https://127.0.0.1:{https_backend_port}"
        elif not route["backend"][0].isdigit():
            route["backend"] = f"localhost:{backends[route['service']]}"
        else:
            route["backend"] = f"127.0.0.1:{backends[route['service']]}"
    return tree
