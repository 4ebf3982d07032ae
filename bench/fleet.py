"""10 edges (issue 23): a fleet of 10 edge minions on this machine, each the edge of its own real Caddy, and
a controller (demo/stack.py ``start(edges=10)``: one master, emulated vendors). The routes stage rolls out
one canary edge, then batches of ``hecate:deployment:edge_batch`` (5): each batch is one Salt job published
to a list of minions (Salt's targeting, publish and returns do the fan-out; hecatelib/engine/fleet.py only
orders the batches and stops at a bad one).

- a route change (one route moved to another backend), deployed with the edge target narrowed to one edge
  and to all ten: wall time of ``salt-run hecate.deploy`` and of its routes step (median of ROUNDS);
- a no-op deploy on one edge and on ten (median of ROUNDS);
- a change that fails on the canary (the route's backend a port nothing listens on): the edges it touched
  and the Caddy admin writes on every other edge (each Caddy's own admin log).

Goals: 10 edges at batch 5 at most 3x one edge (canary + 2 batches); a no-op on 10 at most 1.5x one; a
failing canary touches one edge and sends 0 admin writes elsewhere."""

import copy
import importlib.util
import os
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "demo"))

from stack import LocalStack

from devstack.http import backend_of, get
from devstack.stack import until

RUN = pathlib.Path("/tmp/hecate-bench-fl")


def _sibling(name):
    spec = importlib.util.spec_from_file_location(f"hecate_bench_{name}", pathlib.Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cpu_seconds = _sibling("scale").cpu_seconds
EDGES = 10
BATCH = 5
ROUNDS = 3
DOMAIN = "cloud.cybermonkey.dev"


def targeted(tree, edge):
    """``tree`` with the edge role narrowed to ``edge`` (a glob), the controller named."""
    tree = copy.deepcopy(tree)
    tree["deployment"] = {**tree.get("deployment", {}), "edge_batch": BATCH,
                          "targets": {"controller": "demo-edge", "edge": edge, "tgt_type": "glob"}}  # fmt: skip
    return tree


def moved(tree, backend):
    tree = copy.deepcopy(tree)
    next(r for r in tree["reverse_proxy"]["caddy"]["routes"] if r["domain"] == DOMAIN)["backend"] = backend
    return tree


def answers(stack, edge):
    """Which backend answers DOMAIN through ``edge``'s Caddy (None: not a 200)."""
    try:
        status, _, body = get(stack.edges[edge]["ports"]["http"], DOMAIN)
    except OSError:
        return None
    return backend_of(body) if status == 200 else None


def deploy(stack, tree, what):
    stack.write_pillar(tree)
    out, seconds = stack.salt("salt-run", "hecate.deploy")
    if out.get("status") != "success":
        raise RuntimeError(f"bench: {what}: {str(out)[:1500]}")
    return seconds, (out.get("stages") or {}).get("routes", {}).get("seconds") or 0.0


def run():
    started_load = round(os.getloadavg()[0], 1)
    stack = LocalStack(RUN).start(edges=EDGES)
    edges = sorted(stack.edges)
    try:
        base = stack.pillar
        routes = base["reverse_proxy"]["caddy"]["routes"]
        backends = {name: next(r["backend"] for r in routes if r["service"] == name) for name in ("nextcloud", "grafana")}
        trees = {1: targeted(base, edges[0]), EDGES: targeted(base, "edge-*")}
        deploy(stack, trees[EDGES], "the first deploy on every edge")
        results = {n: {"change": [], "change_routes": [], "noop": []} for n in trees}

        def turn(n, to):  # a route change on n edges, then a no-op there; every targeted edge answers from ``to``
            seconds, routes_s = deploy(stack, moved(trees[n], backends[to]), f"a route change on {n} edge(s)")
            for edge in edges[:n]:
                until(f"{DOMAIN} answering from {to} on {edge}", lambda e=edge: answers(stack, e) == to, 30)
            results[n]["change"].append(seconds)
            results[n]["change_routes"].append(routes_s)
            results[n]["noop"].append(deploy(stack, moved(trees[n], backends[to]), f"a no-op on {n} edge(s)")[0])

        for _ in range(ROUNDS):  # in rotation: a slower moment of the machine weighs on both alike
            turn(EDGES, "grafana")  # every edge moves
            turn(1, "nextcloud")  # the canary alone moves back
            deploy(stack, moved(trees[EDGES], backends["nextcloud"]), "every edge alike again")  # not measured
        cpu = {}
        for n in (1, EDGES):  # where a no-op's time goes: CPU seconds of the CLI, the master, the controller, the edges
            before = cpu_seconds(stack)
            deploy(stack, moved(trees[n], backends["nextcloud"]), f"a no-op on {n} edge(s)")
            after = cpu_seconds(stack)
            used = {name: after[name] - before[name] for name in after}
            cpu[n] = {"cli": used["cli"], "master": used["salt-master"], "controller": used["salt-minion"],
                      "edges": sum(v for k, v in used.items() if k.startswith("salt-minion-"))}  # fmt: skip
        served = {edge: answers(stack, edge) for edge in edges}
        before = {edge: len(stack.edges[edge]["caddy"].mutations()) for edge in edges}
        stack.write_pillar(moved(trees[EDGES], "127.0.0.1:9"))  # nothing listens: the canary's own check fails
        started = time.monotonic()
        failed, _ = stack.salt("salt-run", "hecate.deploy")
        failed_s = round(time.monotonic() - started, 1)
        if failed.get("status") != "failed":
            raise RuntimeError(f"bench: the failing change did not fail: {str(failed)[:1500]}")
        writes = {edge: stack.edges[edge]["caddy"].mutations()[before[edge] :] for edge in edges}
        touched = [edge for edge, count in writes.items() if count]
        still = sum(answers(stack, edge) == served[edge] for edge in edges)
    finally:
        stack.stop()

    def median(n, key):
        return round(statistics.median(results[n][key]), 2)

    one, ten = 1, EDGES

    def ratio(key):
        return median(ten, key) / median(one, key)

    lines = [
        "| edges | route change: deploy s | of it: routes step s | no-op deploy s |",
        "|---|---|---|---|",
        *[f"| {n} | {median(n, 'change')} | {median(n, 'change_routes')} | {median(n, 'noop')} |" for n in (one, ten)],
        "",
        f"route change, {ten} edges at batch {BATCH} (canary + {-(-(ten - 1) // BATCH)} batches) vs 1 edge: "
        f"x{ratio('change'):.2f} the deploy, x{ratio('change_routes'):.2f} its routes step (goal <= 3); "
        f"no-op {ten} vs 1 edge: x{ratio('noop'):.2f} (goal <= 1.5)",
        f"a change failing on the canary ({failed_s} s, recorded failed): edges with admin writes: {', '.join(touched) or 'none'} "
        f"({'; '.join(' '.join(w) for e in touched for w in writes[e])}); admin writes on the other {ten - len(touched)} edges: "
        f"{sum(len(w) for e, w in writes.items() if e not in touched)}; edges serving as before: {still}/{ten}",
        "a no-op's CPU seconds (where its time goes; every process shares this machine's cores): "
        + "; ".join(f"{n} edge(s): " + ", ".join(f"{k} {v:.2f}" for k, v in cpu[n].items()) for n in (one, ten)),
        f"medians of {ROUNDS} turns, 1 and {ten} edges in rotation; one master, {ten} edge minions and {ten} Caddys on this "
        f"machine (nproc {os.cpu_count()}); load (1 min) when it began: {started_load}, at the end: {round(os.getloadavg()[0], 1)}",
    ]
    return {"title": f"{EDGES} edges: rollout in batches, no-op, failing canary (real master + {EDGES} minions, {EDGES} Caddys)",
            "text": "\n".join(lines), "data": {"results": results, "writes": writes, "failed_s": failed_s, "cpu": cpu}}  # fmt: skip


if __name__ == "__main__":
    print(run()["text"])
