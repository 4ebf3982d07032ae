"""make demo: hecate's main job on this machine, for real where it can be (see demo/stack.py).

REAL: a salt-master and a salt-minion, Caddy, Terraform 1.0.3 with a local-only module, local backends.
EMULATED (devstack/emulators, clearly not the vendors): authentik, Hetzner Cloud DNS, Nomad, Consul, Vault.
The seed pillar, pointed at those, goes through `salt-run hecate.deploy` twice (from nothing, then a
no-op); the deployment record and requests through the proxy are printed. `make demo-stop` stops it all.

The demo's directory (configs, logs, state, the pillar as a git repository) is ``--dir``, else
``$HECATE_DEMO_DIR``, else ``$TMPDIR/hecate-demo-<user>`` (one per user: two people on one machine do not
share a demo). ``--stop`` stops every process the demo started and removes that directory. The pack is
installed into the demo's Python (``pip install --no-deps -e``) so
every README command, ``hecate-validate`` included, works in that venv.
"""

import argparse
import getpass
import json
import os
import pathlib
import subprocess
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from stack import BIN, LocalStack, stop

from devstack.http import get

REPO = pathlib.Path(__file__).resolve().parent.parent


def demo_dir(flag=None):
    return pathlib.Path(flag or os.environ.get("HECATE_DEMO_DIR") or pathlib.Path(tempfile.gettempdir()) / f"hecate-demo-{_user()}")


def _user():
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name for this uid (a container)
        return str(os.getuid())


def install_pack():
    """``hecate-validate`` next to this Python, or install the checkout there (editable, no dependencies:
    ``make setup`` installed those)."""
    if not (BIN / "hecate-validate").exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "-e", str(REPO)], check=True)


def say(text):
    print(f"\n== {text}", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--stop", action="store_true")
    parser.add_argument("--dir", help="the demo's directory (default $HECATE_DEMO_DIR, else $TMPDIR/hecate-demo-<user>)")
    args = parser.parse_args()
    run = demo_dir(args.dir)
    if args.stop:
        stopped = stop(run, remove=True)
        print(f"demo: stopped {', '.join(stopped)}" if stopped else "demo: nothing running")
        print(f"demo: removed {run}" if not run.exists() else f"demo: left {run} (not a directory the demo made)")
        return
    install_pack()
    say("starting: REAL Caddy, salt-master, salt-minion, Terraform; EMULATED authentik, Hetzner DNS, Nomad, Consul, Vault")
    stack = LocalStack(run).start()
    for name in ("authentik", "hetzner", "nomad"):
        print(f"  EMULATED {name:10} {stack.emulated[name]['url']}")
    print(f"  REAL Caddy: admin {stack.caddy.admin}, HTTP on 127.0.0.1:{stack.ports['http']}")
    print("  hecate synced to the master (runners, ext_pillar) and the minion (modules, states, utils)")

    say("salt-run hecate.deploy   (the seed pillar, from nothing)")
    first, first_s = stack.salt("salt-run", "hecate.deploy")
    for stage, result in first["stages"].items():
        print(f"  {stage:16} {'ok' if result['ok'] else 'FAILED':6} changed={result.get('changed', '-'):<3} {result.get('seconds', '')}")
    print(f"  status: {first['status']}  {first.get('error') or ''}")
    say("salt-run hecate.deploy   (again: nothing to change)")
    second, second_s = stack.salt("salt-run", "hecate.deploy")
    print(f"  status: {second['status']}; changed: {sum(s.get('changed', 0) for s in second['stages'].values())}")

    say("the deployment record (Consul KV, EMULATED), secrets stripped")
    history, _ = stack.salt("salt-run", "hecate.history")
    print(json.dumps(history[-1], indent=2))

    say("requests through the REAL Caddy")
    checks = [(r["domain"], "/", {}) for r in stack.pillar["reverse_proxy"]["caddy"]["routes"]]
    checks += [
        ("observe.cybermonkey.dev", "/.env", {}),
        ("cloud.cybermonkey.dev", "/", {"User-Agent": "sqlmap/1.7"}),
        ("unknown.example.net", "/", {}),
    ]
    for host, path, headers in checks:
        label = f"{host + path:32} {' '.join(f'{k}: {v}' for k, v in headers.items()):22}"
        try:
            status, answer_headers, body = get(stack.ports["http"], host, path, headers=headers)
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
    print(f"try:   curl -H 'Host: cloud.cybermonkey.dev' http://127.0.0.1:{stack.ports['http']}/")
    print(f"       {BIN}/salt-run -c {run}/conf hecate.status")
    print(f"       {BIN}/salt -c {run}/conf demo-edge caddy.routes")
    print(f"       {BIN}/hecate-validate {REPO}/pillar/hecate.sls")
    print("stop:  make demo-stop")


if __name__ == "__main__":
    main()
