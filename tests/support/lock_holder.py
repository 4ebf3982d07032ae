"""A process that takes the deploy lock and holds it until it is killed: what a ``salt-run hecate.deploy``
is to the lock when an operator ``kill -9``s it.

    python -m tests.support.lock_holder <consul url> <token> <key> <deployment id> [--other-host] [--lock-module PATH]

It prints one line, ``held <session id>``, once the lock is its own, then renews it until it dies.
``--other-host`` names another machine in the lock (another boot id), as a deploy run elsewhere does.
``--lock-module`` takes the lock with another copy of ``hecatelib/consul/lock.py`` (an older one, to
measure it). :func:`start` runs it and waits for that line.
"""

import argparse
import importlib.util
import pathlib
import selectors
import subprocess
import sys
import threading

REPO = pathlib.Path(__file__).resolve().parents[2]
OTHER_HOST = {"host": "ctl-elsewhere", "boot_id": "00000000-0000-4000-8000-0000000000ff", "pid_ns": "pid:[1]"}


def _lock_module(path):
    if not path:
        from hecatelib.consul import lock

        return lock
    spec = importlib.util.spec_from_file_location("hecate_lock_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None):
    parser = argparse.ArgumentParser()
    for name in ("url", "token", "key", "deployment"):
        parser.add_argument(name)
    parser.add_argument("--other-host", action="store_true")
    parser.add_argument("--lock-module")
    args = parser.parse_args(argv)
    from hecatelib.consul import client as consul_client

    lock_module = _lock_module(args.lock_module)
    client = consul_client({"address": args.url, "token": args.token, "allow_insecure_endpoint": True})
    options = {"timeout": 10, "info": {"deployment": args.deployment, "kind": "deploy"}}
    if args.other_host:
        identity = {**lock_module.process_identity(), **OTHER_HOST}
        options["identity"] = identity
    lock = lock_module.ConsulLock(client, args.key, **options)
    lock.acquire()
    print(f"held {lock.session}", flush=True)
    threading.Event().wait()  # renewing in the background until killed


def start(url, token, key, deployment, other_host=False, lock_module=None, timeout=20):
    """Run the holder; returns ``(process, session id)`` once it holds the lock."""
    command = [sys.executable, "-m", "tests.support.lock_holder", url, token, key, deployment]
    command += ["--other-host"] if other_host else []
    command += ["--lock-module", str(lock_module)] if lock_module else []
    env = {"PYTHONPATH": f"{REPO / '_utils'}:{REPO}", "PATH": "/usr/bin:/bin"}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        ready = selector.select(timeout)
    line = process.stdout.readline() if ready else ""  # the holder prints one line, or exits (EOF)
    if not line.startswith("held "):
        process.kill()
        process.wait()
        raise RuntimeError(f"the lock holder did not take the lock: {line!r}")
    return process, line.split()[1]


if __name__ == "__main__":
    sys.path[:0] = [str(REPO / "_utils"), str(REPO)]
    main()
