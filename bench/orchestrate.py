"""No-op orchestration at 10 and 1000 routes (issue 7 d): `salt-run hecate.deploy` and
`salt-run state.orchestrate hecate.orchestrate` on a real master + minion with the whole local stack
(demo/stack.py: real Caddy and Terraform, emulated authentik/Hetzner/Nomad/Consul/Vault)."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "demo"))

from stack import LocalStack

RUN = pathlib.Path("/tmp/hecate-bench")


def measure(routes):
    stack = LocalStack(RUN).start(extra_routes=max(0, routes - 7))  # the seed brings 7 (its https route left out)
    try:
        first, first_s = stack.salt("salt-run", "hecate.deploy")
        assert first["status"] == "success", first
        mutations = len(stack.caddy.mutations())
        noop, noop_s = stack.salt("salt-run", "hecate.deploy")
        changed = sum(s.get("changed", 0) for s in noop["stages"].values())
        _, orchestrate_s = stack.salt("salt-run", "state.orchestrate", "hecate.orchestrate")
        return {
            "routes": len(stack.pillar["reverse_proxy"]["caddy"]["routes"]),
            "first_deploy_s": round(first_s, 1),
            "noop_deploy_s": round(noop_s, 1),
            "noop_orchestrate_s": round(orchestrate_s, 1),
            "noop_changed": changed,
            "noop_caddy_mutations": len(stack.caddy.mutations()) - mutations,
        }
    finally:
        stack.stop()


def run():
    rows = [measure(n) for n in (10, 1000)]
    header = "| routes | first deploy s | no-op deploy s | no-op state.orchestrate s | no-op: changes | no-op: Caddy admin mutations |"
    lines = [header, "|---|---|---|---|---|---|"]
    keys = ("routes", "first_deploy_s", "noop_deploy_s", "noop_orchestrate_s", "noop_changed", "noop_caddy_mutations")
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return {
        "title": "No-op orchestration at 10 and 1000 routes (real master+minion, Caddy, Terraform; emulated vendors)",
        "text": "\n".join(lines),
        "data": rows,
    }
