"""Between deploys (issue 14), measured in one run on a real master + minion with the whole local stack
(demo/stack.py: real Caddy and Terraform, emulated authentik/Hetzner/Nomad/Consul/Vault), the pillar
read from a git repository by git_pillar and hecate's drift reactor on the master, as docs/reconcile.md
sets them up:

(a) a pushed commit to traffic through ``salt-run hecate.follow`` (a master schedule adds up to its period);
(a2) a pushed commit to traffic with nobody running anything: the repository's hook fires ``hecate/push``
    (``salt-run event.send``) and the push reactor (salt/reactor/hecate_push.sls) runs hecate.follow; a
    route-only change (a route moved to another backend: only Caddy changes), from the commit to the route
    answering from its new backend;
(b) Caddy killed (-9) and started the way the Nomad job starts it (``caddy run --resume``) to every
    route answering as before, with no Salt run;
(c) a hand edit through Caddy's admin API to the route serving again through beacon + reactor + heal,
    HEALS edits spread evenly over the beacon interval (edit i lands (i + 0.5) / HEALS of an interval
    after a beacon read: what edits at random moments average to);
(d) Caddy admin requests per beacon interval with nothing drifted (goal: one GET, no write).
(e) the fleet (10 edges) is bench/fleet.py."""

import copy
import json
import os
import pathlib
import shutil
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "demo"))

import yaml
from stack import LocalStack

from devstack.caddy import caddy_binary
from devstack.http import backend_of, get
from devstack.stack import until
from hecatelib.nomad.jobs import CADDY_START
from tests.functional.test_caddy_edge import _caddy_task
from tests.integration.test_fleet import _hand_edit
from tests.integration.test_git_pillar import PillarRepo

RUN = pathlib.Path("/tmp/hecate-bench-rc")  # its own: bench/orchestrate.py stops what runs in /tmp/hecate-bench
INTERVAL = 10  # seconds: a realistic beacon interval (hecate:reconcile:interval allows 2 and up)
IDLE_INTERVALS = 3
HEALS = 10
DOMAIN = "cloud.cybermonkey.dev"
REACTOR = [{"hecate/drift/*/*": ["salt://reactor/hecate_drift.sls"]}, {"hecate/push": ["salt://reactor/hecate_push.sls"]}]
BIN = pathlib.Path(sys.executable).parent


class ReconcileStack(LocalStack):
    """The local stack with its pillar in git (git_pillar, branch main), the drift and push reactors on the
    master, and ``hecate:reconcile`` set to follow main and heal at a 10 s interval."""

    def _write_salt_config(self, ports):
        self.pillar["reconcile"] = {"interval": INTERVAL, "policy": "heal", "follow_branch": "main"}
        super()._write_salt_config(ports)
        shutil.rmtree(self.run / "pillar-git", ignore_errors=True)
        self.repo = PillarRepo(self.run / "pillar-git")
        self.repo.commit(self.pillar, "the stack's pillar")
        path = self.run / "conf" / "master"
        master = yaml.safe_load(path.read_text())
        master.update(
            pillar_roots={"base": []},
            git_pillar_provider="gitpython",
            git_pillar_base="main",
            ext_pillar=[{"git": [f"main file://{self.repo.path}"]}, {"hecate": {}}],
            reactor=REACTOR,
        )
        path.write_text(yaml.safe_dump(master))


def statuses(stack):
    """Each route's status through Caddy (an authentik-protected one answers with its redirect)."""
    port = stack.ports["http"]
    out = {}
    for route in stack.pillar["reverse_proxy"]["caddy"]["routes"]:
        try:
            out[route["domain"]] = get(port, route["domain"], timeout=2)[0]
        except OSError:
            out[route["domain"]] = None
    return out


def follow_to_traffic(stack):
    """(a): commit a new route, run hecate.follow, poll until the route answers from its backend."""
    following = copy.deepcopy(stack.pillar)
    helen = next(r for r in following["reverse_proxy"]["caddy"]["routes"] if r["service"] == "helen")
    following["reverse_proxy"]["caddy"]["routes"].append(
        {"domain": "followed.cybermonkey.dev", "backend": helen["backend"], "service": "followed"}
    )
    started = time.monotonic()
    head = stack.repo.commit(following, "route followed.cybermonkey.dev")
    out, _ = stack.salt("salt-run", "hecate.follow")
    if out.get("status") != "success" or out.get("commit") != head:
        raise RuntimeError(f"bench: hecate.follow: {str(out)[:1000]}")
    until("the followed route", lambda: get(stack.ports["http"], "followed.cybermonkey.dev")[0] == 200, 60)
    stack.pillar = following
    return round(time.monotonic() - started, 1)


def push_to_traffic(stack):
    """(a2): the repository's hook fires hecate/push (docs/reconcile.md); commit a route-only change (a route
    moved to another backend) and poll until it answers from there. No runner is called here."""
    hook = stack.repo.path / ".git" / "hooks" / "post-commit"  # git_pillar's remote is this repository: a commit is the push
    hook.write_text(f"#!/bin/sh\nexec {BIN / 'salt-run'} -c {stack.run / 'conf'} event.send hecate/push >/dev/null 2>&1\n")
    hook.chmod(0o755)
    moved = copy.deepcopy(stack.pillar)
    route = next(r for r in moved["reverse_proxy"]["caddy"]["routes"] if r["domain"] == "followed.cybermonkey.dev")
    route["backend"] = next(r for r in moved["reverse_proxy"]["caddy"]["routes"] if r["service"] == "grafana")["backend"]
    try:
        started = time.monotonic()
        stack.repo.commit(moved, "move followed.cybermonkey.dev to grafana")
        until("the moved route answering from grafana", lambda: _backend(stack, "followed.cybermonkey.dev") == "grafana", 120)
        seconds = round(time.monotonic() - started, 1)
    finally:
        hook.unlink()
    stack.pillar = moved
    return seconds


def _backend(stack, domain):
    try:
        status, _, body = get(stack.ports["http"], domain)
    except OSError:
        return None
    return backend_of(body) if status == 200 else None


def restart_to_serving(stack):
    """(b): kill -9 Caddy, start it with the Nomad job's own arguments and bootstrap, poll every route."""
    before = statuses(stack)
    task = _caddy_task(stack.pillar)
    # the task runs local/caddy-start.sh, which ends in the Caddy command line (hecatelib.nomad.jobs.CADDY_START)
    args = next(line for line in CADDY_START.splitlines() if line.startswith("exec caddy run")).split()[2:]
    local = args[args.index("--config") + 1]  # "${NOMAD_TASK_DIR:-/local}/caddy.json": the bootstrap template's file
    template = next(t for t in task["Templates"] if t["DestPath"].lstrip("/").endswith(local.rsplit("/", 1)[-1].strip('"')))
    bootstrap = stack.run / "caddy" / "bootstrap.json"
    bootstrap.write_text(template["EmbeddedTmpl"])
    command = [caddy_binary(), *[str(bootstrap) if a == local else a for a in args]]
    caddy = stack.caddy
    started = time.monotonic()
    os.killpg(caddy.process.pid, signal.SIGKILL)
    caddy.process.wait(10)
    with open(caddy.log_path, "ab") as log:
        caddy.process = subprocess.Popen(command, stdout=log, stderr=log, env=caddy.env(), start_new_session=True)
    stack.pids["caddy"] = caddy.process.pid
    (stack.run / "pids.json").write_text(json.dumps(stack.pids))
    until("every route answering as before the kill", lambda: statuses(stack) == before, 60)
    return round(time.monotonic() - started, 2), len(before), "--resume" in args


def idle(stack):
    """(d): with the beacon on and nothing drifted, Caddy's admin log over IDLE_INTERVALS intervals."""
    installed = time.time()
    out, _ = stack.salt("salt", "demo-edge", "state.apply", "hecate.drift")
    state = next(iter(out["demo-edge"].values()))
    if state["result"] is not True:
        raise RuntimeError(f"bench: state.apply hecate.drift: {state}")
    first = until("the beacon's first read", lambda: [r for r in stack.caddy.admin_log() if r[0] > installed] or None, 3 * INTERVAL)[0]
    until(f"{IDLE_INTERVALS} more beacon reads", lambda: len([r for r in stack.caddy.admin_log() if r[0] > first[0]]) >= IDLE_INTERVALS,
           (IDLE_INTERVALS + 2) * INTERVAL)  # fmt: skip
    window = [r for r in stack.caddy.admin_log() if first[0] < r[0]][:IDLE_INTERVALS]
    gets = sum(1 for _, method, uri in window if (method, uri) == ("GET", "/config/"))
    writes = sum(1 for _, method, _ in window if method not in ("GET", "HEAD", "OPTIONS"))
    gaps = [b[0] - a[0] for a, b in zip([first, *window], window, strict=False)]
    return {"intervals": IDLE_INTERVALS, "gets_per_interval": gets / IDLE_INTERVALS, "writes": writes,
            "interval_s": round(statistics.mean(gaps), 2)}  # fmt: skip


def heal(stack, healthy, phase):
    """(c): ``phase`` seconds after a beacon read, hand-edit a route; poll until it answers ``healthy`` again."""
    port = stack.ports["http"]
    now = time.time()
    read = until("a beacon read", lambda: [r for r in stack.caddy.admin_log() if r[0] > now] or None, 2 * INTERVAL)[0][0]
    time.sleep(max(0.0, read + phase - time.time()))  # the moment of the edit within the interval is what is measured
    edited = time.time()
    _hand_edit(stack.caddy, DOMAIN, "elsewhere.example.net")
    if get(port, DOMAIN)[0] != 404:
        raise RuntimeError("bench: the hand edit did not take the route away")
    until("the route healed", lambda: get(port, DOMAIN)[0] == healthy, 3 * INTERVAL + 60)
    healed = time.time()
    detected = next(t for t, method, _ in stack.caddy.admin_log() if t > edited and method == "GET")
    return {"edit_to_healed_s": round(healed - edited, 1), "beacon_wait_s": round(detected - edited, 1),
            "reactor_heal_s": round(healed - detected, 1)}  # fmt: skip


def healed_reports(stack):
    """The heals hecate.drift's history has (the runner records one once its heal run is verified)."""
    drift, _ = stack.salt("salt-run", "hecate.drift", "history=1h")
    return sum(1 for r in drift["reports"] if r.get("action") == "healed")


def run():
    stack = ReconcileStack(RUN).start()
    try:
        first, _ = stack.salt("salt-run", "hecate.deploy")
        if first.get("status") != "success":
            raise RuntimeError(f"bench: the first deploy: {str(first)[:1000]}")
        follow_s = follow_to_traffic(stack)
        push_s = push_to_traffic(stack)
        restart_s, routes, resumed = restart_to_serving(stack)
        healthy = statuses(stack)[DOMAIN]
        quiet = idle(stack)
        heals = [heal(stack, healthy, (i + 0.5) * INTERVAL / HEALS) for i in range(HEALS)]
        until(f"{HEALS} heals recorded (hecate.drift history=1h)", lambda: healed_reports(stack) == HEALS, 120)
    finally:
        stack.stop()

    def mean(key):
        return round(statistics.mean(h[key] for h in heals), 1)

    rows = [
        ("(a) commit to traffic, hecate.follow (a new route; the whole deploy)", f"{follow_s} s"),
        ("(a2) push to traffic: hook -> hecate/push -> reactor -> hecate.follow (a route moved to another backend)", f"{push_s} s"),
        (f"(b) Caddy kill -9 to all {routes} routes answering, started as the Nomad job does (--resume: {resumed})", f"{restart_s} s"),
        (
            f"(c) hand edit to healed, beacon + reactor, interval {INTERVAL} s, {HEALS} edits spread over the interval (mean; max)",
            f"{mean('edit_to_healed_s')} s; {max(h['edit_to_healed_s'] for h in heals)} s (goal: mean <= {INTERVAL / 2 + 2:g} s)",
        ),
        ("    of it: waiting for the next beacon read (mean)", f"{mean('beacon_wait_s')} s"),
        ("    of it: event + reactor + heal run (routes stage, verified) (mean)", f"{mean('reactor_heal_s')} s"),
        (
            f"(d) Caddy admin requests per interval, nothing drifted ({quiet['intervals']} intervals of {quiet['interval_s']} s)",
            f"{quiet['gets_per_interval']:g} GET, {quiet['writes']} writes",
        ),
        ("(e) 10 edges: rollout, no-op, failing canary", "bench/fleet.py"),
    ]
    lines = ["| what | measured |", "|---|---|", *[f"| {what} | {value} |" for what, value in rows]]
    return {
        "title": "Between deploys: git to traffic, restart, drift heal, idle cost (real master+minion, Caddy; emulated vendors)",
        "text": "\n".join(lines),
        "data": {"follow_s": follow_s, "push_s": push_s, "restart_s": restart_s, "routes": routes, "heals": heals, "idle": quiet},
    }


if __name__ == "__main__":
    print(run()["text"])
