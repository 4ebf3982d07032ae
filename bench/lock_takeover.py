"""Benchmark: kill -9 of a deploy holding the Consul lock -> the next ``ConsulLock.acquire`` succeeds.

A real process (tests/support/lock_holder.py) takes the deploy lock against the Consul emulator, which ends
a session as Consul's servers do (2 x its TTL after the last renewal, then its lock-delay; see
devstack/emulators/consul.py), running in real time. Once it holds the lock it is killed with SIGKILL and
reaped; the clock runs from the kill until this process's ``acquire()`` with the lock's defaults returns.
Both processes use each lock's own defaults (TTL, lock-delay). Cases:

- this host: the holder ran on the machine of the next deploy (a killed ``salt-run`` on the master);
- another host: the holder's lock names another boot id, so its process cannot be seen (a deploy run
  from another machine).

``HECATE_BENCH_LOCK_BEFORE=<git commit>`` adds a row for ``hecatelib/consul/lock.py`` as it was at that commit
(the lock before issue 27, which never looked at the holder's process: the same on any host).
Run: ``.venv/bin/python bench/lock_takeover.py``.
"""

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
for _path in (REPO / "_utils", REPO):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from devstack.emulators.consul import ConsulEmulator  # noqa: E402
from hecatelib.consul import client as consul_client  # noqa: E402
from tests.support import lock_holder  # noqa: E402

TOKEN = "bench-consul-token"
KEY = "hecate/locks/bench"


def _module(path):
    return lock_holder._lock_module(str(path) if path else None)


def measure(lock_file=None, other_host=False):
    """Seconds from the holder's SIGKILL to the next acquire, and what that acquire said."""
    module = _module(lock_file)
    emulator = ConsulEmulator(tokens={TOKEN: "write"}).start()
    try:
        process, _ = lock_holder.start(emulator.url, TOKEN, KEY, "bench-dead-run", other_host=other_host, lock_module=lock_file)
        process.kill()
        process.wait()
        killed = time.monotonic()
        client = consul_client({"address": emulator.url, "token": TOKEN})
        lock = module.ConsulLock(client, KEY, timeout=300, info={"deployment": "bench-next-run"})
        acquired = lock.acquire()
        seconds = time.monotonic() - killed
        lock.release()
        dead = getattr(acquired, "dead_holder", None)
        named = bool(dead and dead.get("deployment"))
        return {"seconds": round(seconds, 2), "ttl": lock.ttl, "lock_delay": lock.lock_delay, "names_dead_run": named}
    finally:
        emulator.stop()


def _before(commit, directory):
    show = ["git", "show", f"{commit}:_utils/hecatelib/consul/lock.py"]
    text = subprocess.run(show, cwd=REPO, capture_output=True, text=True, check=True).stdout
    path = pathlib.Path(directory) / "lock.py"
    path.write_text(text)
    return path


def run():
    with tempfile.TemporaryDirectory(prefix="hecate-lock-before-") as scratch:  # removed after the measurements
        return _run(scratch)


def _run(scratch):
    cases = [("now", None)]
    if os.environ.get("HECATE_BENCH_LOCK_BEFORE"):
        commit = os.environ["HECATE_BENCH_LOCK_BEFORE"]
        cases.insert(0, (f"before ({commit[:10]})", _before(commit, scratch)))
    rows, data = [], {}
    for label, lock_file in cases:
        places = (("this host", False), ("another host", True)) if lock_file is None else (("any host (it does not look)", False),)
        for where, other in places:
            found = measure(lock_file, other_host=other)
            data[f"{label}, {where}"] = found
            named = "yes" if found["names_dead_run"] else "no"
            rows.append(f"| {label} | {where} | {found['ttl']} s | {found['lock_delay']} s | {found['seconds']:.2f} s | {named} |")
    text = "\n".join(
        [
            "| lock | killed holder on | TTL | lock-delay | kill -9 -> next acquire | names the dead run |",
            "|---|---|---|---|---|---|",
            *rows,
        ]
    )
    title = "kill -9 of the deploy lock's holder -> the next acquire (Consul emulator at 2 x TTL, real time)"
    return {"title": title, "text": text, "data": data}


def main():
    result = run()
    print(result["text"])
    print("json:" + json.dumps(result["data"]))


if __name__ == "__main__":
    main()
