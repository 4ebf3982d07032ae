"""No-op orchestration at 10 and 1000 routes (issue 7 d): `salt-run hecate.deploy` and
`salt-run state.orchestrate hecate.orchestrate` on a real master + minion with the whole local stack
(demo/stack.py: real Caddy and Terraform, emulated authentik/Hetzner/Nomad/Consul/Vault).

Next to each no-op figure: its floor (issue 13), what a no-op deploy cannot avoid: one Salt CLI start and
one job on the minion (all stages run there, so they can share it) that makes only the reads a no-op needs:
one Caddy ``GET /config/`` per edge compared with the pillar there (``caddy.plan``: the config itself need
not cross Salt), one DNS request (a zone that did not move since the last converge is not read: its SOA
serial tells; here ``hetzner_dns.zone``, one GET), authentik's reads of what hecate owns (flows,
groups, providers, applications, outposts, bindings), one Nomad read per job (``nomad_job.status``: a plan
needs the rendered job, a request of the same kind) and terraform's ``plan``. Measured as the wall time of
that one compound ``salt demo-edge`` job; the ratio no-op / floor is the goal's figure (at most 1.5)."""

import pathlib
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "demo"))

from stack import LocalStack

ROUNDS = 5


def floor_reads(stack):
    """The compound job of the floor: ``(functions, args)`` for ``salt <minion> f1,f2,... a1,a2,...``."""
    pillar = stack.pillar
    calls = [("caddy.plan", ""), ("hetzner_dns.zone", pillar["dns"]["zone"])]  # plan: the one GET, compared on the edge
    calls += [(f"authentik.{name}", "") for name in ("flows", "groups", "proxy_providers", "applications", "outposts", "policy_bindings")]
    calls += [("nomad_job.status", f"hecate-{job}") for job in ("postgresql", "redis", "reverse-proxy", "authentik", "helen-bridge")]
    workdir = pillar["terraform"]["workdir"]
    calls += [("hecate_terraform.plan", ""), ("file.remove", f"{workdir}/tfplan")]  # the plan file holds secrets
    return ",".join(f for f, _ in calls), ",".join(a for _, a in calls)


def floor(stack):
    """Wall seconds of the floor's one job (Salt CLI start + one round trip + the reads)."""
    functions, args = floor_reads(stack)
    out, seconds = stack.salt("salt", "demo-edge", functions, args)
    answer = out.get("demo-edge")
    failed = [f for f, v in (answer or {}).items() if isinstance(v, str) and ("Traceback" in v or v.startswith(("ERROR", "'")))]
    if not isinstance(answer, dict) or failed:
        raise RuntimeError(f"bench: the floor's reads failed ({failed}): {str(out)[:1000]}")
    return seconds


def measure(routes):
    run = tempfile.mkdtemp(prefix="hob", dir="/tmp")  # short: unix socket paths; one per run, never shared
    stack = LocalStack(run).start(extra_routes=max(0, routes - 7))  # the seed brings 7 (its https route left out)
    try:
        first, first_s = stack.salt("salt-run", "hecate.deploy")
        assert first["status"] == "success", first
        mutations = len(stack.caddy.mutations())
        _, after_first_s = stack.salt("salt-run", "hecate.deploy")  # terraform plans once more: its state changed
        _, orchestrate_s = stack.salt("salt-run", "state.orchestrate", "hecate.orchestrate")
        # the steady no-op, plan, status and the floor in turns, ROUNDS times: each figure is the median
        # of its turns, so a slower or faster moment of the machine weighs on all of them alike
        turns = {"noop": [], "plan": [], "status": [], "floor": []}
        for _ in range(ROUNDS):
            noop, seconds = stack.salt("salt-run", "hecate.deploy")
            turns["noop"].append(seconds)
            turns["plan"].append(stack.salt("salt-run", "hecate.plan")[1])
            turns["status"].append(stack.salt("salt-run", "hecate.status")[1])
            turns["floor"].append(floor(stack))
        noop_s, plan_s, status_s, floor_s = (round(statistics.median(turns[k]), 2) for k in ("noop", "plan", "status", "floor"))
        changed = sum(s.get("changed", 0) for s in noop["stages"].values())
        return {
            "routes": len(stack.pillar["reverse_proxy"]["caddy"]["routes"]),
            "first_deploy_s": round(first_s, 1),
            "noop_after_first_s": round(after_first_s, 1),
            "noop_deploy_s": noop_s,
            "noop_orchestrate_s": round(orchestrate_s, 1),
            "plan_s": plan_s,
            "status_s": status_s,
            "floor_s": floor_s,
            "noop_over_floor": round(noop_s / floor_s, 2),
            "noop_changed": changed,
            "noop_caddy_mutations": len(stack.caddy.mutations()) - mutations,
        }
    finally:
        stack.stop()
        shutil.rmtree(run, ignore_errors=True)


def run():
    rows = [measure(n) for n in (10, 1000)]
    header = ("| routes | first deploy s | next deploy s | no-op deploy s | floor s | no-op / floor | no-op state.orchestrate s "
              "| hecate.plan s | hecate.status s | no-op: changes | no-op: Caddy admin mutations |")  # fmt: skip
    lines = [header, "|---|---|---|---|---|---|---|---|---|---|---|"]
    keys = ("routes", "first_deploy_s", "noop_after_first_s", "noop_deploy_s", "floor_s", "noop_over_floor", "noop_orchestrate_s",
            "plan_s", "status_s", "noop_changed", "noop_caddy_mutations")  # fmt: skip
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    small, large = rows
    lines += [
        "",
        f"no-op deploy 1000 vs 10 routes: x{large['noop_deploy_s'] / small['noop_deploy_s']:.2f} (goal <= 1.5); "
        f"plan / no-op deploy: {small['plan_s'] / small['noop_deploy_s']:.2f} and {large['plan_s'] / large['noop_deploy_s']:.2f}, "
        f"status / no-op deploy: {small['status_s'] / small['noop_deploy_s']:.2f} and {large['status_s'] / large['noop_deploy_s']:.2f} "
        "(10 and 1000 routes; goal <= 1)",
        "next deploy: the first no-op after the first deploy (terraform plans again: the apply changed its state);",
        f"no-op deploy, hecate.plan, hecate.status and floor: each the median of {ROUNDS} turns taken in rotation after it.",
        "floor: one `salt demo-edge` job making only the reads a no-op needs",
        "(bench/orchestrate.py). Goal: no-op / floor <= 1.5.",
    ]
    return {
        "title": "No-op orchestration at 10 and 1000 routes (real master+minion, Caddy, Terraform; emulated vendors)",
        "text": "\n".join(lines),
        "data": rows,
    }
