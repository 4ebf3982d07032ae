"""The pillar from git, as operators keep it: a master whose pillar is a local git repository
(git_pillar with GitPython), a commit, ``salt-run git_pillar.update``, and the edge serves the new route;
``hecate.follow`` by hand, and on a push through a git hook, the event bus and the reactor."""

import base64
import copy
import hashlib
import pathlib
import subprocess
import sys
import time

import pytest
import yaml

from devstack import host
from devstack.caddy import Caddy, free_port
from devstack.http import backend_of, get
from devstack.pillars import local_seed_tree
from devstack.stack import master_overrides, until

BIN = pathlib.Path(sys.executable).parent
pytestmark = pytest.mark.integration


class PillarRepo:
    """A git repository holding top.sls + hecate.sls; :meth:`commit` writes a tree and commits it."""

    def __init__(self, path, top="base:\n  '*':\n    - hecate\n"):
        self.path = path
        path.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")
        (path / "top.sls").write_text(top)

    def git(self, *args):
        env = {"GIT_AUTHOR_NAME": "ops", "GIT_AUTHOR_EMAIL": "ops@example.org", "GIT_COMMITTER_NAME": "ops",
               "GIT_COMMITTER_EMAIL": "ops@example.org", "PATH": "/usr/bin:/bin"}  # fmt: skip
        return subprocess.run(["git", *args], cwd=self.path, check=True, capture_output=True, text=True, env=env).stdout.strip()

    def commit(self, tree, message):
        (self.path / "hecate.sls").write_text(yaml.safe_dump({"hecate": tree}, sort_keys=False))
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")


@pytest.fixture(scope="module")
def git_caddy(integration_dir):
    caddy = Caddy(integration_dir / "gitcaddy").start()
    yield caddy
    caddy.stop()


@pytest.fixture(scope="module")
def git_tree(git_caddy, edge_backends):
    plain, secure = edge_backends
    ports = {"http": free_port(), "https": free_port(), "admin": free_port()}
    return local_seed_tree({k: b.port for k, b in plain.items()}, secure.port, ports, git_caddy.admin)


@pytest.fixture(scope="module")
def pillar_repo(integration_dir, git_tree):
    repo = PillarRepo(integration_dir / "pillar-git")
    repo.commit(git_tree, "the seed pillar on local backends")
    return repo


def remote_dir(remote):
    """The directory git_pillar keeps ``remote``'s working copy in: a hash of it (``GitProvider.__init__``,
    salt/utils/gitfs.py: base64 of the sha256 of the remote's id, ``/`` as ``_``)."""
    return base64.b64encode(hashlib.sha256(remote.encode()).digest()).decode().replace("/", "_")


@pytest.fixture(scope="module")
def site_repo(integration_dir, pillar_repo):
    """A second git_pillar remote with pillar of its own (no ``hecate`` key), whose working copy sorts before
    the hecate pillar's: the order in which the master's cache lists them is not the configured one."""
    hecate_dir = remote_dir(f"main file://{pillar_repo.path}")
    path = next(p for n in range(64) if remote_dir(f"main file://{(p := integration_dir / f'site-git-{n}')}") < hecate_dir)
    repo = PillarRepo(path, top="base:\n  '*':\n    - site\n")
    (path / "site.sls").write_text("site: {owner: ops}\n")
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", "the site's own pillar")
    return repo


@pytest.fixture(scope="module")
def git_master(salt_factories, pillar_repo, site_repo, vault, consul, integration_dir):
    overrides = master_overrides(
        vault,
        consul,  # the deploy lock and records (emulated Consul)
        integration_dir / "roots",
        pillar_roots={"base": []},
        git_pillar_provider="gitpython",
        git_pillar_base="main",  # the branch that is the base environment
        # two remotes, as sites keep them: hecate's pillar listed first, another one beside it
        ext_pillar=[{"git": [f"main file://{pillar_repo.path}", f"main file://{site_repo.path}"]}, {"hecate": {}}],
        reactor=[{"hecate/push": ["salt://reactor/hecate_push.sls"]}],  # as docs/reconcile.md enables it
    )
    factory = salt_factories.salt_master_daemon("hecate-git-master", overrides=overrides)
    with factory.started():
        yield factory


@pytest.fixture(scope="module")
def git_minion(git_master):
    overrides = {"grains": {"roles": ["hecate-controller", "hecate-proxy"]}, **host.opts()}
    factory = git_master.salt_minion_daemon("hecate-git-edge", overrides=overrides)
    with factory.started():
        yield factory


@pytest.fixture(scope="module")
def git_call(git_minion):
    cli = git_minion.salt_call_cli(timeout=120)
    assert cli.run("saltutil.sync_all").returncode == 0
    return cli


def _state(result):
    assert result.data, result
    return next(iter(result.data.values()))


def test_a_commit_reaches_the_edge_after_git_pillar_update(git_master, git_call, git_tree, pillar_repo, edge_backends):
    first = _state(git_call.run("state.apply", "hecate.routes"))
    assert first["result"] is True, first["comment"]
    port = git_tree["reverse_proxy"]["caddy"]["ports"]["http"]
    assert get(port, "observe.cybermonkey.dev")[0] == 200
    assert get(port, "new.cybermonkey.dev")[1].get("x-hecate-route") == "none"  # not routed yet

    plain, _ = edge_backends
    changed = copy.deepcopy(git_tree)
    changed["reverse_proxy"]["caddy"]["routes"].append(
        {"domain": "new.cybermonkey.dev", "backend": f"127.0.0.1:{plain['grafana'].port}", "service": "new"}
    )
    pillar_repo.commit(changed, "route new.cybermonkey.dev")
    unchanged = _state(git_call.run("state.apply", "hecate.routes"))
    assert unchanged["changes"] == {}  # the master still serves its cached checkout

    update = git_master.salt_run_cli(timeout=120).run("git_pillar.update")
    assert update.returncode == 0, update
    assert git_call.run("saltutil.refresh_pillar", wait=True).returncode == 0
    second = _state(git_call.run("state.apply", "hecate.routes"))
    assert second["result"] is True and list(second["changes"]["added"]) == ["hecate_route_new"], second
    status, _, body = get(port, "new.cybermonkey.dev")
    assert (status, backend_of(body)) == (200, "grafana")


def test_an_invalid_commit_never_reaches_the_edge(git_master, git_call, git_tree, pillar_repo, git_caddy):
    before = git_caddy.config_bytes()
    bad = copy.deepcopy(git_tree)
    bad["reverse_proxy"]["caddy"]["routes"][0]["backend"] = "ftp://nowhere"
    pillar_repo.commit(bad, "a typo")
    try:
        assert git_master.salt_run_cli(timeout=120).run("git_pillar.update").returncode == 0
        git_call.run("saltutil.refresh_pillar", wait=True)
        refused = git_call.run("state.apply", "hecate.routes")
        assert refused.returncode != 0
        assert "routes[0]" in str(refused.data) and "backend" in str(refused.data)
        assert git_caddy.config_bytes() == before
    finally:
        pillar_repo.git("revert", "--no-edit", "HEAD")
        git_master.salt_run_cli(timeout=120).run("git_pillar.update")
        git_call.run("saltutil.refresh_pillar", wait=True)


def test_follow_deploys_each_new_commit_once_and_skips_an_invalid_one(git_master, git_call, git_tree, pillar_repo, edge_backends):
    run = git_master.salt_run_cli(timeout=300)
    assert "runners.hecate" in run.run("saltutil.sync_all").data["runners"]
    off = run.run("hecate.follow", minion="hecate-git-edge")
    assert off.returncode == 0 and off.data["status"] == "off", off.data

    plain, _ = edge_backends
    following = copy.deepcopy(git_tree)
    following["reconcile"] = {"follow_branch": "main"}
    following["reverse_proxy"]["caddy"]["routes"].append(
        {"domain": "followed.cybermonkey.dev", "backend": f"127.0.0.1:{plain['grafana'].port}", "service": "followed"}
    )
    head = pillar_repo.commit(following, "follow main, with a new route")
    started = time.monotonic()
    first = run.run("hecate.follow", minion="hecate-git-edge")
    seconds = time.monotonic() - started
    assert first.returncode == 0 and first.data["status"] == "success" and first.data["commit"] == head, first.data
    port = git_tree["reverse_proxy"]["caddy"]["ports"]["http"]
    assert backend_of(get(port, "followed.cybermonkey.dev")[2]) == "grafana"
    shown = run.run("hecate.show", first.data["id"])
    assert shown.data["pillar"]["commit"] == head, shown.data
    print(f"commit to traffic through hecate.follow: {seconds:.1f} s")

    again = run.run("hecate.follow", minion="hecate-git-edge")
    assert again.data["status"] == "up to date" and again.data["commit"] == head, again.data

    bad = copy.deepcopy(following)
    bad["reverse_proxy"]["caddy"]["routes"][0]["backend"] = "ftp://nowhere"
    pillar_repo.commit(bad, "a typo")
    try:
        skipped = run.run("hecate.follow", minion="hecate-git-edge")
        assert skipped.returncode == 1 and skipped.data["status"] == "skipped", skipped.data
        assert "routes[0]" in skipped.data["error"] and "backend" in skipped.data["error"]
        assert backend_of(get(port, "followed.cybermonkey.dev")[2]) == "grafana"  # the edge keeps serving
    finally:
        pillar_repo.commit(git_tree, "back to the start")


def test_with_two_remotes_the_record_names_the_hecate_pillars_commit(git_master, git_call, pillar_repo, site_repo):
    """Issue 27: the recorded commit was the first working copy in the master's cache that is a git checkout;
    with two remotes that was the other remote's whenever its hash sorted first (as ``site_repo``'s does)."""
    run = git_master.salt_run_cli(timeout=300)
    assert run.run("saltutil.sync_all").returncode == 0  # (nothing new after the follow test's sync)
    assert run.run("git_pillar.update").returncode == 0
    deployed = run.run("hecate.deploy", minion="hecate-git-edge")
    assert deployed.returncode == 0 and deployed.data["status"] == "success", deployed.data
    recorded = run.run("hecate.show", deployed.data["id"]).data["pillar"]
    hecate, site = (f"main file://{repo.path}" for repo in (pillar_repo, site_repo))
    head = pillar_repo.git("rev-parse", "HEAD")
    assert recorded["commit"] == head, recorded  # (today's code: the site remote's commit)
    assert (recorded["source"], recorded["dirty"]) == (hecate, False), recorded
    named = {s["source"]: s["commit"] for s in recorded["sources"]}
    assert named == {hecate: head, site: site_repo.git("rev-parse", "HEAD")}, recorded


def test_a_push_reaches_the_edge_through_the_reactor_and_an_invalid_one_never_does(
    git_master, git_call, git_tree, pillar_repo, edge_backends, event_listener
):
    """A git hook fires ``hecate/push`` (``salt-run event.send``, as docs/reconcile.md installs it); the reactor
    runs hecate.follow: the pushed route serves with nobody calling a runner. A pushed commit whose pillar is
    invalid is skipped (``hecate/follow/skipped``) and the edge keeps serving what it served."""
    run = git_master.salt_run_cli(timeout=300)
    assert run.run("saltutil.sync_all").returncode == 0  # the runner (synced already when the follow test ran first)
    hook = pillar_repo.path / ".git" / "hooks" / "post-commit"  # the remote is this repository: a commit is the push
    hook.write_text(f"#!/bin/sh\nexec {BIN / 'salt-run'} -c {git_master.config_dir} event.send hecate/push >/dev/null 2>&1\n")
    hook.chmod(0o755)
    plain, _ = edge_backends
    port = git_tree["reverse_proxy"]["caddy"]["ports"]["http"]
    pushed = copy.deepcopy(git_tree)
    pushed["reconcile"] = {"follow_branch": "main"}
    pushed["reverse_proxy"]["caddy"]["routes"].append(
        {"domain": "pushed.cybermonkey.dev", "backend": f"127.0.0.1:{plain['grafana'].port}", "service": "pushed"}
    )
    try:
        started = time.monotonic()
        head = pillar_repo.commit(pushed, "a pushed route")
        until("the pushed route serving", lambda: _backend(port, "pushed.cybermonkey.dev") == "grafana", 120)
        print(f"push to traffic through the reactor: {time.monotonic() - started:.1f} s")
        last = run.run("hecate.history", limit=1, minion="hecate-git-edge").data[-1]
        assert (last["status"], last["commit"]) == ("success", head[:12]), last

        bad = copy.deepcopy(pushed)
        bad["reverse_proxy"]["caddy"]["routes"][0]["backend"] = "ftp://nowhere"
        since = time.time()
        pillar_repo.commit(bad, "a typo, pushed")
        skipped = event_listener.wait_for_events([(git_master.id, "hecate/follow/skipped")], timeout=120, after_time=since)
        assert skipped.found_all_events, "no hecate/follow/skipped after an invalid push"
        (event,) = skipped.matches
        assert "routes[0]" in event.data["reason"] and "backend" in event.data["reason"], event.data
        assert _backend(port, "pushed.cybermonkey.dev") == "grafana"  # the edge keeps serving
        assert not event_listener.get_events([(git_master.id, "hecate/deploy/*/start")], after_time=since)  # no run began
    finally:
        hook.unlink()
        pillar_repo.commit(git_tree, "back to the start")


def _backend(port, domain):
    """Which backend answers ``domain`` through the edge, or None (nothing listening yet: Caddy's bootstrap)."""
    try:
        status, _, body = get(port, domain)
    except OSError:
        return None
    return backend_of(body) if status == 200 else None
