"""Benchmarks: what a Caddy converge costs, and what reloads cost the clients.

(a) Admin requests, reloads (mutations, counted from Caddy's own admin log) and wall time per converge, for
    N = 10, 100, 1000 routes (the ``common`` profile: five blocking rules, headers, compression per route),
    no-op and k = 1, 50 changed, side by side in the same run:
    - hecate: ``caddy.routes_managed`` through Salt's loader (one GET, at most one POST);
    - naive: one request per route, through the same ``caddy`` module functions: ``GET /id/<route>`` for
      each, then ``PATCH /id/<route>`` for each that differs (what a per-route state or script does).
    The post-write probe (``verify``) is off on both sides: this measures the converge.
(b) Requests lost while 20 route changes are applied under a bounded loopback load (100 routes): hecate's
    one reload against 20 separate reloads, for a client that does not retry (``wrk`` from Debian; a Python
    client when wrk is missing) and one that retries a failed GET twice.
(d) A no-op ``salt-call --local state.apply hecate.routes`` at 10 and 1000 routes: wall time (Salt's start
    included) and the state's own duration.
(e) ``caddy.check`` of every route at 10 and 1000 routes in the same run, in-process (the state's post-write
    check) and through ``salt-call --local`` (``hecate.verify`` per edge), with the pillar validations per
    check counted (issue 13: one per run; 1000 routes at most 4x 10). ``python bench/caddy.py check`` runs
    only this part.
(f) The post-write check right after a reload (issue 10 item 14): one route of 50 moved back and forth 60
    times with ``verify`` on; a check that fails undoes a correct change (``POST /load``). ``python
    bench/caddy.py reload`` runs only this part.

``run()`` returns ``{"title", "text", "data"}``; ``bench/run.py`` prints and records it. Standalone:
``.venv/bin/python bench/caddy.py``.
"""

import contextlib
import copy
import http.client
import json
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
for _path in (REPO / "_utils", REPO):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import yaml  # noqa: E402
from saltfactories.utils.functional import Loaders  # noqa: E402

from devstack import host  # noqa: E402
from devstack.caddy import Backend, Caddy, free_port  # noqa: E402
from hecatelib import schema  # noqa: E402
from hecatelib.caddy import config as caddy_config  # noqa: E402
from tests.conftest import minion_opts_for  # noqa: E402

SIZES = (10, 100, 1000)
CHANGES = (1, 50)
LOAD_ROUTES = 100
LOAD_CHANGES = 20
LOAD_CONNECTIONS = 4
LOAD_DELAY_MS = 5  # per connection between requests: at most ~800 requests/s in all
LOAD_REPEAT = 3
STATE_SIZES = (10, 1000)
CHECK_SIZES = (10, 1000)
RELOAD_ROUTES = 50
RELOAD_MOVES = 60
BIN = pathlib.Path(sys.executable).parent


# -- pillar --------------------------------------------------------------------------------------------------
def tree_for(n, caddy, ports, port_a, port_b, changed=()):
    routes = [
        {"domain": f"r{i:04d}.bench.test", "backend": f"127.0.0.1:{port_b if i in changed else port_a}", "service": f"r{i:04d}"}
        for i in range(n)
    ]
    return {
        "global": {"domain": "bench.test"},
        "reverse_proxy": {
            "caddy": {
                "admin": caddy.admin,
                "ports": ports,
                "tls": {"mode": "off"},
                "bind": ["127.0.0.1"],
                "verify": {"enabled": False},
                "routes": routes,
            }
        },
    }


def spread(n, k):
    return set(range(0, n, max(1, n // k))[:k])


class Bench:
    """One real Caddy, two local backends, one Salt loader whose pillar is swapped in place."""

    def __init__(self, workdir):
        self.workdir = pathlib.Path(workdir)
        self.caddy = Caddy(self.workdir / "caddy").start()
        self.backend_a = Backend("a").start()
        self.backend_b = Backend("b").start()
        for backend in (self.backend_a, self.backend_b):
            # headers and body go out in separate writes: without TCP_NODELAY each answer waits ~40 ms
            # for the delayed ACK, and the backend, not Caddy, would bound the load
            backend.server.RequestHandlerClass.disable_nagle_algorithm = True
        self.ports = {"http": free_port(), "https": free_port(), "admin": free_port()}
        self.loaders = Loaders(minion_opts_for(self.workdir / "salt", {}))

    def tree(self, n, changed=()):
        return tree_for(n, self.caddy, self.ports, self.backend_a.port, self.backend_b.port, changed)

    def use(self, tree):
        """Swap the pillar in place: the dict the loaded modules read (``__pillar__``), and the opts' copy."""
        for pillar in (self.loaders.modules.pack["__pillar__"], self.loaders.opts["pillar"]):
            pillar.clear()
            pillar["hecate"] = tree

    def hecate(self, tree):
        self.use(tree)
        result = self.loaders.states.caddy.routes_managed(name="bench")
        if result.result is not True:
            raise SystemExit(f"bench: routes_managed failed: {result.comment}")
        return result

    def naive(self, tree):
        """One GET per route, one PATCH per differing route (a PUT before the catch-all for a new one)."""
        self.use(tree)
        caddy = self.loaders.modules.caddy
        valid = schema.validate(copy.deepcopy(tree), root_prefix=host.PREFIX)  # the admin socket is on the scratch host
        for route in valid["reverse_proxy"]["caddy"]["routes"]:
            compiled = caddy_config.compile_route(route, valid)
            current = caddy.route(compiled["@id"])
            if current is None:
                position = len(caddy.config(f"apps/http/servers/{caddy_config.SERVER}/routes")) - 1
                caddy.insert(f"apps/http/servers/{caddy_config.SERVER}/routes/{position}", compiled)
            elif current != compiled:
                caddy.patch(compiled["@id"], compiled)

    def measure(self, fn):
        before = self.caddy.admin_requests()
        start = time.perf_counter()
        fn()
        seconds = time.perf_counter() - start
        after = self.caddy.admin_requests()[len(before) :]
        return {"requests": len(after), "reloads": sum(1 for m, _ in after if m not in ("GET", "HEAD", "OPTIONS")), "seconds": seconds}

    def reset(self, n):
        self.caddy.reset()
        self.hecate(self.tree(n))

    def close(self):
        self.loaders.reset_state()
        self.caddy.stop()
        self.backend_a.stop()
        self.backend_b.stop()


# -- (a) converge cost ---------------------------------------------------------------------------------------
def converge_cost(bench):
    rows = []
    for n in SIZES:
        bench.reset(n)
        base = bench.tree(n)
        row = {"N": n, "hecate": {}, "naive": {}}
        row["hecate"]["no-op"] = bench.measure(lambda base=base: bench.hecate(base))
        row["naive"]["no-op"] = bench.measure(lambda base=base: bench.naive(base))
        for k in CHANGES:
            if k > n:
                continue
            changed = bench.tree(n, spread(n, k))
            row["hecate"][f"k={k}"] = bench.measure(lambda changed=changed: bench.hecate(changed))
            bench.hecate(base)
            row["naive"][f"k={k}"] = bench.measure(lambda changed=changed: bench.naive(changed))
            bench.hecate(base)
        rows.append(row)
    return rows


def converge_text(rows):
    lines = [
        "(a) Caddy converge: admin requests [reloads] and seconds, hecate's routes_managed vs one request per route",
        f"{'N':>5} | {'run':<6} | {'hecate':>13} | {'naive':>13} | {'requests':>9} | {'reloads':>8} | {'hecate s':>8} | {'naive s':>8} | "
        f"{'time':>6}",
        "-" * 104,
    ]
    for row in rows:
        for run, h in row["hecate"].items():
            v = row["naive"][run]
            reloads = f"{v['reloads'] / h['reloads']:.0f}x" if h["reloads"] else ("=" if not v["reloads"] else f"{v['reloads']}:0")
            lines.append(
                f"{row['N']:>5} | {run:<6} | {h['requests']:>5} [{h['reloads']:>4}] | {v['requests']:>5} [{v['reloads']:>4}] | "
                f"{v['requests'] / h['requests']:>8.0f}x | {reloads:>8} | {h['seconds']:>8.3f} | {v['seconds']:>8.3f} | "
                f"{v['seconds'] / h['seconds']:>5.1f}x"
            )
    lines.append("ratios are naive / hecate; reloads: every admin mutation re-provisions Caddy's whole config")
    return "\n".join(lines)


# -- (b) requests lost under load ------------------------------------------------------------------------------
WRK_SCRIPT = """
wrk.headers["Host"] = "{host}"
function delay()
  return {delay}
end
"""


def wrk_binary():
    return shutil.which("wrk")


class RetryingClient:
    """Threads sending GETs on keep-alive connections at a bounded rate; a failed request (connection
    closed or reset, 502/503/504) is retried twice on a new connection before it counts as lost."""

    def __init__(self, port, host, connections=LOAD_CONNECTIONS, delay=LOAD_DELAY_MS / 1000, retries=2):
        self.port, self.host, self.connections, self.delay, self.retries = port, host, connections, delay, retries
        self.sent = self.lost = self.retried = self.first_failures = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = []

    def _connect(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)

    def _once(self, conn):
        conn.request("GET", "/", headers={"Host": self.host, "User-Agent": "hecate-bench"})
        response = conn.getresponse()
        response.read()
        return response.status < 500

    def _worker(self):
        conn = self._connect()
        while not self.stop.is_set():
            attempt, ok = 0, False
            while attempt <= self.retries:
                try:
                    ok = self._once(conn)
                except (OSError, http.client.HTTPException):
                    ok = False
                if ok:
                    break
                conn.close()
                conn = self._connect()
                attempt += 1
            with self.lock:
                self.sent += 1
                self.first_failures += attempt > 0
                self.retried += attempt
                self.lost += not ok
            time.sleep(self.delay)
        conn.close()

    def start(self):
        self.threads = [threading.Thread(target=self._worker, daemon=True) for _ in range(self.connections)]
        for thread in self.threads:
            thread.start()
        return self

    def finish(self):
        self.stop.set()
        for thread in self.threads:
            thread.join(10)
        return {"sent": self.sent, "lost": self.lost, "failed_first_try": self.first_failures}


class NonRetryingClient(RetryingClient):
    def __init__(self, port, host):
        super().__init__(port, host, retries=0)


class Wrk:
    """wrk (no retries): errors are connect/read/write/timeout socket errors plus non-2xx/3xx answers."""

    def __init__(self, port, host, workdir):
        self.script = pathlib.Path(workdir) / "bench.lua"
        self.script.write_text(WRK_SCRIPT.format(host=host, delay=LOAD_DELAY_MS))
        self.port = port
        self.process = None

    def start(self, seconds):
        cmd = [wrk_binary(), "-t1", f"-c{LOAD_CONNECTIONS}", f"-d{seconds}s", "--timeout", "5s", "-s", str(self.script),
               f"http://127.0.0.1:{self.port}/"]  # fmt: skip
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return self

    def finish(self):
        out, _ = self.process.communicate(timeout=120)
        sent = int(re.search(r"(\d+) requests in", out).group(1))
        errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        return {"sent": sent, "lost": errors + (int(non2xx.group(1)) if non2xx else 0), "raw": out.strip()}


def lost_under_load(bench):
    n = LOAD_ROUTES
    bench.reset(n)
    base = bench.tree(n)
    host = "r0000.bench.test"  # one of the changed routes: it switches between two live backends
    changed = bench.tree(n, spread(n, LOAD_CHANGES))
    if len(spread(n, LOAD_CHANGES)) != LOAD_CHANGES or 0 not in spread(n, LOAD_CHANGES):
        raise SystemExit("bench: the changed set must hold 20 routes including r0000")
    use_wrk = wrk_binary() is not None
    results = {}
    for name, apply in (("hecate: 1 reload", bench.hecate), ("20 reloads", bench.naive)):
        totals = {"reloads": 0, "seconds": 0.0, "plain": {"sent": 0, "lost": 0}, "retrying": {"sent": 0, "lost": 0, "failed_first_try": 0}}
        for _ in range(LOAD_REPEAT):
            bench.hecate(base)
            # the change is applied 1 s into the load; both clients run for the same fixed window
            seconds = 4 if name.startswith("hecate") else 10  # 20 reloads on a busy 2-core machine took 4.2 s
            started = time.perf_counter()
            if use_wrk:
                plain = Wrk(bench.ports["http"], host, bench.workdir).start(seconds)
            else:
                plain = NonRetryingClient(bench.ports["http"], host).start()
            retrying = RetryingClient(bench.ports["http"], host).start()
            time.sleep(1.0)
            cost = bench.measure(lambda apply=apply: apply(changed))
            if cost["seconds"] > seconds - 2:
                raise SystemExit(f"bench: applying took {cost['seconds']:.1f}s, longer than the load window allows")
            if not use_wrk:
                time.sleep(max(0.0, seconds - (time.perf_counter() - started)))
            stats = plain.finish()
            time.sleep(max(0.0, seconds - (time.perf_counter() - started)))
            retry_stats = retrying.finish()
            totals["reloads"] += cost["reloads"]
            totals["seconds"] += cost["seconds"]
            for key in ("sent", "lost"):
                totals["plain"][key] += stats[key]
            for key in ("sent", "lost", "failed_first_try"):
                totals["retrying"][key] += retry_stats[key]
        results[name] = totals
    bench.hecate(base)
    return {"client": "wrk 4.1 (Debian)" if use_wrk else "Python threads (wrk not installed)", "results": results}


def load_text(data):
    lines = [
        f"(b) requests lost while {LOAD_CHANGES} of {LOAD_ROUTES} routes change under load: {LOAD_CONNECTIONS} keep-alive connections "
        f"per client, {LOAD_DELAY_MS} ms between requests on each, {LOAD_REPEAT} runs summed",
        f"non-retrying client: {data['client']}; retrying client: Python, a failed GET retried twice on a new connection",
        f"{'apply':<18} | {'reloads':>7} | {'apply s':>7} | {'no retry: lost/sent':>20} | "
        f"{'retrying: lost/sent':>20} | {'failed 1st try':>14}",
        "-" * 100,
    ]
    for name, t in data["results"].items():
        plain, retrying = t["plain"], t["retrying"]
        lines.append(
            f"{name:<18} | {t['reloads']:>7} | {t['seconds']:>7.2f} | {plain['lost']:>8} / {plain['sent']:<9} | "
            f"{retrying['lost']:>8} / {retrying['sent']:<9} | {retrying['failed_first_try']:>14}"
        )
    return "\n".join(lines)


# -- (d) no-op state.apply through salt-call --local ---------------------------------------------------------
def salt_call(conf, *args):
    cmd = [str(BIN / "salt-call"), "--local", "-c", str(conf), "--out=json", *args]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(args)} failed: {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
    return seconds, json.loads(proc.stdout)


def salt_call_conf(bench, n):
    """A ``salt-call --local`` config dir whose pillar is ``bench.tree(n)``."""
    root = bench.workdir / f"salt-call-{n}"
    pillar_dir, conf = root / "pillar", root / "conf"
    pillar_dir.mkdir(parents=True, exist_ok=True)
    conf.mkdir(parents=True, exist_ok=True)
    (pillar_dir / "top.sls").write_text("base:\n  '*':\n    - hecate\n")
    (pillar_dir / "hecate.sls").write_text(yaml.safe_dump({"hecate": bench.tree(n)}, sort_keys=False))
    (conf / "minion").write_text(yaml.safe_dump({
        "id": "bench-edge", "file_client": "local", "root_dir": str(root / "salt"), "file_roots": {"base": [str(REPO / "salt")]},
        "pillar_roots": {"base": [str(pillar_dir)]}, "module_dirs": [str(REPO / "_modules")], "states_dirs": [str(REPO / "_states")],
        "utils_dirs": [str(REPO / "_utils")], "log_file": str(root / "salt.log"), "log_level_logfile": "warning",
        **host.opts(),  # hecate's roots on the scratch host, where the bench's Caddy has its admin socket
    }))  # fmt: skip
    return conf


def state_apply_noop(bench, repeat=3):
    rows = []
    for n in STATE_SIZES:
        bench.caddy.reset()
        conf = salt_call_conf(bench, n)
        salt_call(conf, "state.apply", "hecate.routes")  # from nothing: not measured
        mutations = len(bench.caddy.mutations())
        walls, durations = [], []
        for _ in range(repeat):
            seconds, out = salt_call(conf, "state.apply", "hecate.routes")
            state = next(iter(out["local"].values()))
            if state["result"] is not True or state["changes"]:
                raise SystemExit(f"bench: the no-op state.apply changed something: {state}")
            walls.append(seconds)
            durations.append(state["duration"] / 1000)
        if len(bench.caddy.mutations()) != mutations:
            raise SystemExit("bench: a no-op state.apply sent a mutation")
        rows.append({"N": n, "wall": statistics.median(walls), "state": statistics.median(durations), "mutations": 0})
    return rows


def state_text(rows):
    lines = [
        "(d) no-op `salt-call --local state.apply hecate.routes` (median of 3; wall includes Salt's own start-up)",
        f"{'N':>5} | {'wall s':>7} | {'state s':>7} | {'admin mutations':>15}",
        "-" * 45,
    ]
    lines.extend(f"{r['N']:>5} | {r['wall']:>7.2f} | {r['state']:>7.3f} | {r['mutations']:>15}" for r in rows)
    return "\n".join(lines)


# -- (e) the post-write check: 10 vs 1000 routes in one run ----------------------------------------------------
def check_cost(bench, repeat=3):
    """``caddy.check`` of every route, in-process (the loader: what the state's post-write check costs) and
    through ``salt-call --local`` (what ``hecate.verify`` costs per edge), with the pillar validations counted."""
    rows = []
    for n in CHECK_SIZES:
        bench.reset(n)
        calls = []
        real = schema.validate

        def counting(tree, real=real, calls=calls):
            calls.append(1)
            return real(tree)

        schema.validate = counting
        try:
            loader = []
            for _ in range(repeat):
                start = time.perf_counter()
                failures = bench.loaders.modules.caddy.check()["failed"]
                loader.append(time.perf_counter() - start)
                if failures:
                    raise SystemExit(f"bench: caddy.check failed: {failures[:3]}")
        finally:
            schema.validate = real
        conf = salt_call_conf(bench, n)
        wall = []
        for _ in range(repeat):
            seconds, out = salt_call(conf, "caddy.check")
            if (out.get("local") or {}).get("failed") != []:
                raise SystemExit(f"bench: salt-call caddy.check failed: {str(out)[:500]}")
            wall.append(seconds)
        rows.append({"N": n, "loader_s": statistics.median(loader), "salt_call_s": statistics.median(wall),
                     "validations": len(calls) / repeat})  # fmt: skip
    return rows


def check_text(rows):
    lines = [
        "(e) `caddy.check` of every route (median of 3): in-process through the loader, and `salt-call --local`",
        f"{'N':>5} | {'loader s':>8} | {'salt-call s':>11} | {'validations per check':>21}",
        "-" * 56,
    ]
    lines.extend(f"{r['N']:>5} | {r['loader_s']:>8.3f} | {r['salt_call_s']:>11.2f} | {r['validations']:>21g}" for r in rows)
    small, big = rows[0], rows[-1]
    lines.append(
        f"{big['N']} vs {small['N']} routes: x{big['salt_call_s'] / small['salt_call_s']:.1f} through salt-call (goal <= 4), "
        f"x{big['loader_s'] / small['loader_s']:.1f} in-process ({big['loader_s'] / big['N'] * 1000:.2f} ms per route)"
    )
    return "\n".join(lines)


# -- (f) the post-write check right after a reload --------------------------------------------------------------
def reload_checks(bench, n=RELOAD_ROUTES, moves=RELOAD_MOVES):
    bench.reset(n)
    failed = []
    before = len(bench.caddy.mutations())
    for i in range(moves):
        tree = bench.tree(n, changed={0} if i % 2 == 0 else set())
        tree["reverse_proxy"]["caddy"]["verify"] = {"enabled": True}
        bench.use(tree)
        result = bench.loaders.states.caddy.routes_managed(name="bench")
        if result.result is not True:
            failed.append(result.comment.splitlines()[-1].strip())
    mutations = bench.caddy.mutations()[before:]
    return {"routes": n, "moves": moves, "failed": len(failed), "restores": mutations.count(("POST", "/load")), "reasons": failed[:5]}


def reload_text(row):
    lines = [
        f"(f) post-write check right after the reload: 1 route of {row['routes']} moved {row['moves']} times, verify on",
        f"failed checks (correct change undone): {row['failed']}/{row['moves']}; snapshot restores (POST /load): {row['restores']}",
    ]
    lines.extend(f"  {reason}" for reason in row["reasons"])
    return "\n".join(lines)


# -- entry points --------------------------------------------------------------------------------------------
def run():
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="hbc", dir="/tmp"))
    bench = Bench(workdir)
    try:
        converge = converge_cost(bench)
        load = lost_under_load(bench)
        state = state_apply_noop(bench)
        check = check_cost(bench)
        reload = reload_checks(bench)
    finally:
        bench.close()
        shutil.rmtree(workdir, ignore_errors=True)
    text = "\n\n".join([converge_text(converge), load_text(load), state_text(state), check_text(check), reload_text(reload)])
    return {"title": "Caddy: converge cost, requests lost to reloads, no-op state.apply, check 10 vs 1000, check after reload",
            "text": text, "data": {"converge": converge, "load": load, "state_apply": state, "check": check, "reload": reload}}  # fmt: skip


def run_part(part):
    """Only (e) or (f): ``python bench/caddy.py check`` / ``reload``."""
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="hbc", dir="/tmp"))
    bench = Bench(workdir)
    try:
        return check_text(check_cost(bench)) if part == "check" else reload_text(reload_checks(bench))
    finally:
        bench.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        print(run_part(sys.argv[1]) if sys.argv[1:] in (["check"], ["reload"]) else run()["text"])
