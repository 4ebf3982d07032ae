"""Issue 25 through the state engine: a pillar path is never a way into the host.

``state.sls hecate.routes`` with the real Caddy on the scratch host (devstack.host: the minion's
``hecate_root_prefix``, never the real /etc), one hostile pillar after another: a system directory as the
certificate directory (with ``owner: nobody``), hecate's root itself, ``..``, a symbolic link as the directory,
on the way to it or under a temporary file's name, a directory hecate did not create, an admin socket in a
system directory. Each is refused naming its key path, and afterwards no directory outside hecate's roots
changed mode, owner or content (nor the directory hecate did not create); the Nomad job rendered from the
good pillar mounts nothing outside the roots.
"""

import copy
import hashlib
import os
import stat

import pytest

from devstack import host
from devstack.caddy import free_port
from devstack.http import get
from devstack.pillars import local_seed_tree
from tests.support.certs import CA
from tests.unit.test_nomad_templates import parsed, task

CUSTOM = "cloud.cybermonkey.dev"
DIR_KEY = "hecate:reverse_proxy:caddy:tls:dir"


def fingerprint(top, skip=host.ROOTS):
    """Every entry under ``top`` (the roots' subtrees left out): mode, owner, group, and the content of a file,
    the names in a directory, the target of a link."""
    found = {}
    for base, dirs, files in os.walk(top):
        dirs[:] = sorted(d for d in dirs if os.path.join(base, d) not in map(str, skip))
        for name in [".", *dirs, *files]:
            path = os.path.normpath(os.path.join(base, name))
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                what = os.readlink(path)
            elif stat.S_ISDIR(info.st_mode):
                what = sorted(os.listdir(path))
            else:
                with open(path, "rb") as handle:
                    what = hashlib.sha256(handle.read()).hexdigest()
            found[path] = (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid, what)
    return found


@pytest.fixture(scope="module")
def ca():
    return CA()


@pytest.fixture
def system():
    """The scratch host's system directories with something in them, as a real /etc, /var/lib and /run have."""
    tag = os.urandom(3).hex()
    (host.ROOT / "etc" / f"passwd-{tag}").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (host.ROOT / "etc" / f"ssl-{tag}").mkdir()
    (host.ROOT / "etc" / f"ssl-{tag}" / "ca.pem").write_text("a trusted CA\n")
    (host.ROOT / "var" / "lib" / f"other-{tag}").mkdir()
    (host.ROOT / "run" / f"other-{tag}").mkdir()
    return {"passwd": host.ROOT / "etc" / f"passwd-{tag}", "etc": host.ROOT / "etc"}


@pytest.fixture
def tree(caddy, backends, ca):
    plain, secure = backends
    ports = {"http": free_port(), "https": free_port(), "admin": free_port()}
    tree = local_seed_tree({k: b.port for k, b in plain.items()}, secure.port, ports, caddy.admin, tls_mode="internal")
    cert, key, _ = ca.issue([CUSTOM])
    tree["reverse_proxy"]["caddy"]["tls"].update(
        dir=str(host.below("etc", "tls", make=False)), certificates={"corp": {"certificate": cert, "key": key}}
    )
    return tree


def apply_routes(make_loaders, tree):
    (result,) = make_loaders({"hecate": tree}).modules.state.sls("hecate.routes")
    return result


def with_tls(tree, **tls):
    changed = copy.deepcopy(tree)
    changed["reverse_proxy"]["caddy"]["tls"].update(tls)
    return changed


def operator_dir():
    """A directory below /etc/hecate that an operator made, with a file in it: hecate did not create it."""
    made = host.below("etc", "operator")
    (made / "notes.txt").write_text("mine\n")
    return made


def link_to_etc(name):
    link = host.below("etc", name, make=False)
    os.symlink(host.ROOT / "etc", link)
    return link


HOSTILE = {
    "a system directory": lambda t: with_tls(t, dir=str(host.ROOT / "etc")),
    "a system directory given to nobody": lambda t: with_tls(t, dir=str(host.ROOT / "etc"), owner="nobody"),
    "hecate's root itself": lambda t: with_tls(t, dir=str(host.ROOT / "etc" / "hecate")),
    "dot-dot out of the root": lambda t: with_tls(t, dir=f"{host.ROOT}/etc/hecate/../../etc"),
    "a symbolic link as the directory": lambda t: with_tls(t, dir=str(link_to_etc("tls-link"))),
    "a symbolic link on the way": lambda t: with_tls(t, dir=f"{link_to_etc('sub-link')}/tls"),
    "a directory hecate did not create": lambda t: with_tls(t, dir=str(operator_dir())),
}
REASONS = {
    "a system directory": (DIR_KEY, "is not below"),
    "a system directory given to nobody": ("hecate:reverse_proxy:caddy:tls:owner", "shared by unrelated daemons"),
    "hecate's root itself": (DIR_KEY, "is not below"),
    "dot-dot out of the root": (DIR_KEY, "not a plain absolute path"),
    "a symbolic link as the directory": (DIR_KEY, "is a symbolic link"),
    "a symbolic link on the way": (DIR_KEY, "is a symbolic link"),
    "a directory hecate did not create": (DIR_KEY, "was not created by hecate"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_path_is_refused_by_key_and_changes_nothing_outside_the_roots(case, make_loaders, tree, caddy, system):
    hostile = HOSTILE[case](tree)
    directory = hostile["reverse_proxy"]["caddy"]["tls"]["dir"]
    inside = fingerprint(directory, skip=()) if os.path.isdir(directory) and not os.path.islink(directory) else None
    before = fingerprint(host.ROOT)
    result = apply_routes(make_loaders, hostile)
    assert fingerprint(host.ROOT) == before  # no mode, owner or content changed outside hecate's roots
    if inside is not None:
        assert fingerprint(directory, skip=()) == inside  # nor the directory hecate did not create
    where, reason = REASONS[case]
    assert result.result is False and where in result.comment and reason in result.comment, result.comment
    assert caddy.mutations() == []  # nothing reached Caddy either


def test_an_admin_socket_in_a_system_directory_is_refused_and_nothing_is_dialled(make_loaders, tree, caddy, system):
    hostile = copy.deepcopy(tree)
    hostile["reverse_proxy"]["caddy"]["admin"] = f"unix/{host.ROOT}/etc/caddy-admin.sock"
    before = fingerprint(host.ROOT)
    result = apply_routes(make_loaders, hostile)
    assert fingerprint(host.ROOT) == before
    assert result.result is False and "hecate:reverse_proxy:caddy:admin" in result.comment, result.comment
    assert "is not below" in result.comment


def test_a_link_planted_under_a_temporary_name_is_never_followed(make_loaders, tree, ca, system):
    """The edge writes ``<name>.hecate-tmp`` and renames it: a link planted there (by whoever may write the
    certificate directory, such as ``tls.owner``) is removed, not written through."""
    assert apply_routes(make_loaders, tree).result is True
    cert_dir = tree["reverse_proxy"]["caddy"]["tls"]["dir"]
    cert, key, fingerprint_hex = ca.issue([CUSTOM])
    for name in (f"corp-{fingerprint_hex[:16]}.crt", f"corp-{fingerprint_hex[:16]}.key"):
        for suffix in (".tmp", ".hecate-tmp"):  # the temporary names of today and of before
            os.symlink(system["passwd"], os.path.join(cert_dir, name + suffix))
    before = fingerprint(host.ROOT)
    rotated = copy.deepcopy(tree)
    rotated["reverse_proxy"]["caddy"]["tls"]["certificates"]["corp"] = {"certificate": cert, "key": key}
    result = apply_routes(make_loaders, rotated)
    assert fingerprint(host.ROOT) == before and system["passwd"].read_text().startswith("root:x:0:0")
    assert result.result is True, result.comment
    assert get(tree["reverse_proxy"]["caddy"]["ports"]["https"], CUSTOM, tls_ca=ca.pem)[0] == 200


def test_the_good_pillar_converges_and_its_job_mounts_only_below_the_roots(make_loaders, tree, ca, system):
    before = fingerprint(host.ROOT)
    result = apply_routes(make_loaders, tree)
    assert result.result is True, result.comment
    assert get(tree["reverse_proxy"]["caddy"]["ports"]["https"], CUSTOM, tls_ca=ca.pem)[0] == 200
    assert fingerprint(host.ROOT) == before  # it wrote below /etc/hecate only
    caddy_task = task(parsed(tree, "reverse-proxy"), "proxy-stack", "caddy")
    mounts = [volume.split(":")[0] for volume in caddy_task["Config"]["volumes"]]
    assert mounts == [
        str(tree["reverse_proxy"]["caddy"]["admin"][len("unix/") :].rsplit("/", 1)[0]),
        tree["reverse_proxy"]["caddy"]["tls"]["dir"],
    ]
    assert all(any(m.startswith(f"{root}/") for root in host.ROOTS) for m in mounts), mounts
