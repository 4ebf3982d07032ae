"""5000 routes end to end (issue 23), next to 10 routes in the same run, on the local stack (demo/stack.py:
a real master + minion, Caddy and Terraform; emulated authentik/Hetzner/Nomad/Consul/Vault, the Cloud API's
rate limit on: 3600 requests an hour, a bucket refilling gradually), with ``hecate:dns:wildcard`` on:

- the first deploy; the no-op (the median of ROUNDS turns, each beside its floor, as bench/orchestrate.py
  defines it); a one-route change (one route moved to another backend, until it answers from there); a
  rollback of that change (``salt-run hecate.rollback``: back to the tree before it, until the route answers
  from its first backend again);
- the DNS requests each of them sent (the emulator's own count);
- the peak RSS of every ``salt-run``, of the minion (its job processes included) and of Caddy over the run;
- where a no-op's time goes: the CPU seconds of each process (the CLI, the master, the minion, Caddy, the
  emulators), and its wall time.

Goals: first deploy and rollback under 40 s, no-op under 1.5x its floor and under 3x the no-op at 10 routes,
a one-route change under 2x the no-op, no peak RSS growing faster than the route count."""

import copy
import importlib.util
import os
import pathlib
import resource
import statistics
import sys
import threading
import time

import psutil

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "demo"))

from stack import LocalStack

from devstack.http import backend_of, get
from devstack.stack import until

RUN = pathlib.Path("/tmp/hecate-bench-sc")
ROUTES = (10, 5000)
ROUNDS = 3
DNS = {"wildcard": True}


def _sibling(name):
    spec = importlib.util.spec_from_file_location(f"hecate_bench_{name}", pathlib.Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


floor = _sibling("orchestrate").floor


class Peaks(threading.Thread):
    """The peak RSS (MiB) of each group of processes, sampled every 50 ms: ``salt-run`` (any salt-run of
    this stack), ``minion`` (the daemon and its job processes), ``master``, ``caddy``."""

    def __init__(self, stack):
        super().__init__(daemon=True)
        self.stack, self.peak, self.stopped = stack, {}, threading.Event()
        self.conf = str(stack.run / "conf")

    def groups(self):
        out = {"master": [self.stack.pids["salt-master"]], "minion": [self.stack.pids["salt-minion"]], "caddy": [self.stack.pids["caddy"]]}
        for process in psutil.process_iter(["cmdline"]):
            cmdline = process.info["cmdline"] or []
            if any(part.endswith("salt-run") for part in cmdline[:3]) and self.conf in cmdline:
                out.setdefault("salt-run", []).append(process.pid)
        return out

    def run(self):
        while not self.stopped.wait(0.05):
            for group, pids in self.groups().items():
                for pid in pids:
                    try:
                        process = psutil.Process(pid)
                        family = [process, *(process.children(recursive=True) if group != "salt-run" else [])]
                        rss = sum(p.memory_info().rss for p in family)
                    except psutil.Error:
                        continue
                    self.peak[group] = max(self.peak.get(group, 0), rss)

    def stop(self):
        self.stopped.set()
        self.join(5)
        return {group: round(rss / 2**20) for group, rss in self.peak.items()}


def cpu_seconds(stack):
    """CPU seconds used so far by each of the stack's processes (with the children they reaped)."""
    out = {}
    for name, pid in stack.pids.items():
        try:
            process = psutil.Process(pid)
            out[name] = sum(
                t.user + t.system + t.children_user + t.children_system
                for t in (p.cpu_times() for p in [process, *process.children(recursive=True)])
            )
        except psutil.Error:
            out[name] = 0.0
    own = resource.getrusage(resource.RUSAGE_CHILDREN)  # the CLIs this process ran and reaped
    out["cli"] = own.ru_utime + own.ru_stime
    return out


def timed(stack, *args, dns=True):
    """Run a Salt CLI: ``(output, wall seconds, DNS requests it caused)``."""
    before = stack.stats()["hetzner"]["requests"] if dns else 0
    out, seconds = stack.salt(*args)
    return out, seconds, (stack.stats()["hetzner"]["requests"] - before) if dns else None


def ok(out, what):
    if not isinstance(out, dict) or out.get("status") != "success":
        raise RuntimeError(f"bench: {what}: {str(out)[:1500]}")
    return out


def steps(out):
    """``name seconds`` of each step a run applied (skipped ones left out), from its summary."""
    return ", ".join(f"{name} {step['seconds']}" for name, step in (out.get("stages") or {}).items() if not step.get("skipped"))


def serving(stack, domain, backend):
    status, _, body = get(stack.ports["http"], domain)
    return status == 200 and backend_of(body) == backend


def measure(n):
    stack = LocalStack(RUN).start(extra_routes=max(0, n - 7), dns=DNS)
    peaks = Peaks(stack)
    peaks.start()
    try:
        routes = stack.pillar["reverse_proxy"]["caddy"]["routes"]
        first, first_s, first_dns = timed(stack, "salt-run", "hecate.deploy")
        ok(first, "the first deploy")
        ok(timed(stack, "salt-run", "hecate.deploy")[0], "the deploy after it")  # terraform plans once more; DNS reads once
        turns = {"noop": [], "floor": [], "noop_dns": []}
        for _ in range(ROUNDS):
            out, seconds, dns = timed(stack, "salt-run", "hecate.deploy")
            ok(out, "a no-op deploy")
            turns["noop"].append(seconds)
            turns["noop_dns"].append(dns)
            turns["floor"].append(floor(stack))
        before = cpu_seconds(stack)
        started = time.monotonic()
        ok(stack.salt("salt-run", "hecate.deploy")[0], "a no-op deploy")
        wall = time.monotonic() - started
        after = cpu_seconds(stack)
        cpu = {name: round(after[name] - before[name], 2) for name in after}
        cpu = {name: seconds for name, seconds in cpu.items() if seconds >= 0.01}

        moved = copy.deepcopy(stack.pillar)
        route = moved["reverse_proxy"]["caddy"]["routes"][-1]
        grafana = next(r for r in routes if r["service"] == "grafana")
        old_backend = backend_of(get(stack.ports["http"], route["domain"])[2])
        route["backend"] = grafana["backend"]
        stack.write_pillar(moved)
        started = time.monotonic()
        change, _, change_dns = timed(stack, "salt-run", "hecate.deploy")
        ok(change, "the one-route change")
        until("the moved route answering from its new backend", lambda: serving(stack, route["domain"], "grafana"), 60)
        change_s = time.monotonic() - started
        started = time.monotonic()
        back, _, back_dns = timed(stack, "salt-run", "hecate.rollback")
        ok(back, "the rollback")
        until("the route answering from its first backend again", lambda: serving(stack, route["domain"], old_backend), 60)
        rollback_s = time.monotonic() - started
        return {
            "routes": len(routes),
            "first_s": round(first_s, 1),
            "first_dns": first_dns,
            "noop_s": round(statistics.median(turns["noop"]), 2),
            "noop_dns": max(turns["noop_dns"]),
            "floor_s": round(statistics.median(turns["floor"]), 2),
            "change_s": round(change_s, 1),
            "change_dns": change_dns,
            "rollback_s": round(rollback_s, 1),
            "rollback_dns": back_dns,
            "steps": {"first deploy": steps(first), "one-route change": steps(change), "rollback": steps(back)},
            "noop_cpu": cpu,
            "noop_cpu_wall": round(wall, 2),
            "peak_mib": peaks.stop(),
            "load": round(os.getloadavg()[0], 1),
        }
    finally:
        peaks.stopped.set()
        stack.stop()


def cpu_line(row):
    return f"{row['routes']} routes [{row['noop_cpu_wall']} s]: " + ", ".join(f"{k} {v}" for k, v in sorted(row["noop_cpu"].items()))


def run():
    started_load = round(os.getloadavg()[0], 1)
    rows = [measure(n) for n in ROUTES]
    small, large = rows
    lines = [
        "| routes | first deploy s [DNS requests] | no-op s [DNS] | floor s | no-op / floor | one-route change s [DNS] | "
        "rollback s [DNS] | peak RSS MiB: salt-run, minion, Caddy | load (1 min) after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        peak = r["peak_mib"]
        lines.append(
            f"| {r['routes']} | {r['first_s']} [{r['first_dns']}] | {r['noop_s']} [{r['noop_dns']}] | {r['floor_s']} | "
            f"{r['noop_s'] / r['floor_s']:.2f} | {r['change_s']} [{r['change_dns']}] | {r['rollback_s']} [{r['rollback_dns']}] | "
            f"{peak.get('salt-run', '?')}, {peak.get('minion', '?')}, {peak.get('caddy', '?')} | {r['load']} |"
        )
    ratio = large["routes"] / small["routes"]
    growth = {g: large["peak_mib"].get(g, 0) / max(small["peak_mib"].get(g, 1), 1) for g in ("salt-run", "minion", "caddy")}
    lines += [
        "",
        f"{large['routes']} routes: first deploy {large['first_s']} s (goal < 40), rollback {large['rollback_s']} s (goal < 40); "
        f"no-op / floor {large['noop_s'] / large['floor_s']:.2f} (goal < 1.5); no-op {large['routes']} vs {small['routes']} routes "
        f"x{large['noop_s'] / small['noop_s']:.2f} (goal < 3); one-route change / no-op "
        f"{large['change_s'] / large['noop_s']:.2f} (goal < 2)",
        f"peak RSS {large['routes']} vs {small['routes']} routes (x{ratio:g} routes): "
        + ", ".join(f"{g} x{v:.1f}" for g, v in growth.items()),
        "where a no-op's time goes, CPU seconds by process (its wall time in brackets): " + "; ".join(map(cpu_line, rows)),
        *[f"{large['routes']} routes, {what}, seconds of each step it applied: {line}" for what, line in large["steps"].items()],
        f"load (1 min) when it began: {started_load}; no-op, floor: medians of {ROUNDS} turns taken in rotation; one-route change and "
        "rollback: until the route answers from its new (old) backend; DNS: requests the Hetzner emulator counted (hecate:dns:wildcard on)",
    ]
    title = "5000 routes end to end, next to 10 (real master+minion, Caddy, Terraform; emulated vendors)"
    return {"title": title, "text": "\n".join(lines), "data": rows}


if __name__ == "__main__":
    print(run()["text"])
