"""Where hecate may write, chmod, chown and mount on a host, and the safe way down to it.

The pillar arrives by pull request (docs/security.md), so a path in it must never become a way into the
host. hecate writes, chmods, chowns and mounts only strictly below three roots of its own:

- ``/etc/hecate``: files hecate writes for another program to read (Caddy's custom certificates, ``tls.dir``);
- ``/var/lib/hecate``: state that lives on (Terraform's ``workdir``, with its state file);
- ``/run/hecate``: runtime (Caddy's admin socket, whose directory the reverse-proxy job mounts).

A pillar path names a directory *below* a root, never a root itself (a bind mount of the root would hand the
container everything else of hecate's). The validator (:func:`check_pillar`) refuses any other path. On the
host, hecate walks from the root down one component at a time with ``O_NOFOLLOW | O_DIRECTORY``
(:func:`open_below`): a symbolic link anywhere from the root down is refused, and so is a directory that does
not belong to the minion's user or that others may write to (someone else could swap what is inside). Files
are written through a temporary name opened ``O_CREAT | O_EXCL | O_NOFOLLOW`` and renamed in the same
directory (:func:`write_file`): a link planted under the temporary name is never followed.

hecate changes the mode or owner only of a directory it created: it leaves a mark in it (:data:`MARK`). It
also adopts an empty directory it owns (Docker creates a missing bind-mount source as an empty root-owned
0755 directory); any other directory must already have the mode and owner hecate needs, or the run stops
and changes nothing. The roots themselves are never changed (a missing one is created 0755).

Tests and chroots relocate the roots: ``hecate_root_prefix: /scratch`` in the minion (and master) config
makes them ``/scratch/etc/hecate``, ``/scratch/var/lib/hecate``, ``/scratch/run/hecate``; pillar paths stay
literal and must lie below the relocated roots. Production leaves it unset.
"""

import contextlib
import errno
import os
import re
import stat

from hecatelib.spec import Str, quote

ROOTS = {"etc": "/etc/hecate", "lib": "/var/lib/hecate", "run": "/run/hecate"}
PREFIX_OPTION = "hecate_root_prefix"
MARK = ".hecate-owned"  # in a directory hecate created: it may change that directory's mode and owner
# What a path may be made of: absolute, components of letters, digits, . _ - + @ (Caddy's own unix-socket
# charset) that never start with a dot: no ".", no "..", no hidden names, no empty component.
_PATH = re.compile(r"\A(/[A-Za-z0-9_@+-][A-Za-z0-9._@+-]*)+\Z")
MAX_PATH = 200
# Inside a Nomad allocation (the task's view): /alloc is the allocation directory, never a host path.
ALLOC = "/alloc"

# Accounts a pillar may not hand a private key to (``tls.owner``): root is the default already (leave the
# key out), the others are shared by unrelated daemons, so each of them could read the key. On the edge the
# owner must also be a system account (see :func:`check_owner_uid`).
SHARED_ACCOUNTS = frozenset(
    "root toor daemon bin sys sync games man lp mail news uucp proxy www-data backup list irc gnats "
    "nobody nogroup nfsnobody _apt systemd-network systemd-resolve systemd-timesync messagebus sshd".split()
)
FIRST_SYSTEM_UID = 100  # Debian's base-passwd: 0-99 are the static accounts of the base system
OVERFLOW_UID = 65534  # nobody


class UnsafePath(OSError):
    """A path hecate will not use: ``what`` (the pillar key) and the reason."""

    def __init__(self, what, reason):
        super().__init__(f"{what}: {reason}")
        self.what, self.reason = what, reason


# -- the roots -------------------------------------------------------------------------------------
def prefix(opts):
    """The configured root prefix (``hecate_root_prefix`` in the minion or master config), "" when unset."""
    value = (opts or {}).get(PREFIX_OPTION) or ""
    if not value:
        return ""
    value = str(value)
    if not value.startswith("/") or ".." in value.split("/"):
        raise ValueError(f"{PREFIX_OPTION} must be an absolute path without '..', got {value!r}")
    return os.path.normpath(value).rstrip("/")


def root(kind, root_prefix=""):
    """The root ``kind`` (``etc``, ``lib``, ``run``) under ``root_prefix``."""
    return f"{root_prefix}{ROOTS[kind]}"


def well_formed(path):
    """Whether ``path`` is absolute and plain: no ``.``/``..``/hidden or empty components, a tame charset."""
    return isinstance(path, str) and len(path) <= MAX_PATH and bool(_PATH.match(path))


def below(path, top):
    """Whether the well-formed ``path`` lies strictly below ``top`` (a component boundary, not a prefix)."""
    return well_formed(path) and path.startswith(top.rstrip("/") + "/")


def under_some_root(path):
    """Whether ``path`` lies strictly below one of the roots under *some* prefix (``.../run/hecate/x``): the
    job renderer's last check that it never mounts a system directory, whatever prefix validated it."""
    return well_formed(path) and any(f"{top}/" in path and not path.endswith(top) for top in ROOTS.values())


class HostPath(Str):
    """An absolute host path of plain components (see :func:`well_formed`); where it may lie is checked by
    :func:`check_pillar`, which knows the roots."""

    def __init__(self, what="absolute path"):
        super().__init__(max_len=MAX_PATH, what=what)

    def __call__(self, value, path, report):
        value = super().__call__(value, path, report)
        if isinstance(value, str) and len(value) <= MAX_PATH and not well_formed(value):
            report.error(
                path,
                f"{quote(value)} is not a plain absolute path (components of letters, digits, . _ - + @; "
                "no '.', '..', hidden or empty ones)",
            )
        return value


def _socket_dir(address):
    return address[len("unix/") :].rsplit("/", 1)[0] if isinstance(address, str) and address.startswith("unix//") else None


def _placed(report, where, value, kind, root_prefix, why, shown=None):
    """Refuse ``value`` unless it lies strictly below root ``kind`` (``shown`` names it in the message)."""
    top = root(kind, root_prefix)
    shown = shown or quote(value)
    if not well_formed(value):
        report.error(where, f"{shown} is not a plain absolute path (no '.', '..', hidden or empty components)")
    elif not below(value, top):
        report.error(where, f"{shown} is not below {top}: {why} (docs/security.md)")


def check_pillar(tree, report, root_prefix=""):
    """Every pillar key that becomes a host path hecate writes, chmods, chowns or mounts, against the roots:

    - ``reverse_proxy:caddy:tls:dir`` (written, chmod 0700, chown ``tls.owner``, mounted read-only) below
      ``/etc/hecate``, when certificates are set (the directory is used only then);
    - the directory of a unix-socket ``reverse_proxy:caddy:admin`` (mounted read-write into Caddy's
      container, where Caddy creates the socket) below ``/run/hecate``;
    - ``nomad:jobs:reverse-proxy:admin_socket``: inside the allocation (``/alloc/...``, no host mount), or
      its directory below ``/run/hecate``;
    - ``terraform:workdir`` (created 0700, written; Terraform runs every ``.tf`` file in it) below
      ``/var/lib/hecate``."""
    caddy = (tree.get("reverse_proxy") or {}).get("caddy") or {}
    tls = caddy.get("tls") or {}
    if tls.get("certificates") and tls.get("dir") is not None:
        _placed(report, "hecate:reverse_proxy:caddy:tls:dir", tls["dir"], "etc", root_prefix,
                "the edge writes the private keys there and sets its mode and owner")  # fmt: skip
    socket_dir = _socket_dir(caddy.get("admin"))
    if socket_dir is not None:
        _placed(report, "hecate:reverse_proxy:caddy:admin", socket_dir, "run", root_prefix,
                "the job mounts it read-write into Caddy's container; give the socket a directory of its own, "
                "like unix//run/hecate/caddy/admin.sock", shown=f"the socket's directory {quote(socket_dir)}")  # fmt: skip
    job_socket = ((((tree.get("nomad") or {}).get("jobs") or {}).get("reverse-proxy")) or {}).get("admin_socket")
    if isinstance(job_socket, str) and not below(job_socket, ALLOC):
        where = "hecate:nomad:jobs:reverse-proxy:admin_socket"
        _placed(report, where, job_socket.rsplit("/", 1)[0], "run", root_prefix,
                "outside the allocation (/alloc/...) the job mounts it read-write into Caddy's container",
                shown=f"the socket's directory {quote(job_socket.rsplit('/', 1)[0])}")  # fmt: skip
    workdir = (tree.get("terraform") or {}).get("workdir")
    if isinstance(workdir, str):
        _placed(report, "hecate:terraform:workdir", workdir, "lib", root_prefix,
                "hecate writes the module there and Terraform runs every .tf file in it")  # fmt: skip


def check_owner_name(value, path, report):
    """``tls.owner`` as the validator sees it (no passwd database there): a user name, not a shared account."""
    if isinstance(value, str) and value in SHARED_ACCOUNTS:
        reason = (
            "is the default already: leave tls.owner out"
            if value == "root"
            else "is shared by unrelated daemons, each of which could then read the certificates' private keys"
        )
        report.error(path, f"{quote(value)} {reason}; name the dedicated system account Caddy runs as (like caddy)")


def login_uid_min(path="/etc/login.defs"):
    """``UID_MIN`` of login.defs (the first uid of a person's account), 1000 when it does not say."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "UID_MIN" and parts[1].isdigit():
                    return int(parts[1])
    except OSError:
        pass
    return 1000


def check_owner_uid(name, uid, login_min=None):
    """On the edge: the reason ``tls.owner`` ``name`` (uid ``uid``) may not own the keys, or None. It must be a
    system account: not root or a base-system account (uid < 100), not nobody (65534), not a person's login
    (uid >= login.defs UID_MIN), who could then read the company's private key."""
    login_min = login_uid_min() if login_min is None else login_min
    if uid < FIRST_SYSTEM_UID:
        return f"user {name!r} has uid {uid}: root or a base-system account, shared by many programs"
    if uid == OVERFLOW_UID:
        return f"user {name!r} has uid {uid} (nobody), shared by unrelated daemons"
    if uid >= login_min:
        return f"user {name!r} has uid {uid}: a person's login (uid {login_min} and up) must not read the private keys"
    return None


# -- on the host -----------------------------------------------------------------------------------
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_dir(name, what, shown, dir_fd=None):
    """``name`` (in ``dir_fd``) opened as a directory, never through a link; None when it does not exist."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
    try:  # Linux answers ENOTDIR for a link opened O_NOFOLLOW | O_DIRECTORY: say which it is
        link = stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        link = False
    if link:
        raise UnsafePath(what, f"{shown} is a symbolic link: hecate follows no link below its roots")
    raise UnsafePath(what, f"{shown} is not a directory")


def _check_dir(fd, what, shown, owners):
    info = os.fstat(fd)
    if info.st_uid not in owners:
        raise UnsafePath(what, f"{shown} belongs to uid {info.st_uid}, not to hecate (uid {os.geteuid()})")
    if info.st_mode & 0o022:
        raise UnsafePath(what, f"{shown} is writable by others (mode {stat.S_IMODE(info.st_mode):04o}): they could swap what is inside")
    return info


def _mkdir(name, dir_fd=None):
    """Make directory ``name``; whether this call made it."""
    try:
        os.mkdir(name, 0o700, dir_fd=dir_fd)
        return True
    except FileExistsError:
        return False


def open_below(path, top, what, create=False, leaf_owners=(), check_leaf=True):
    """``(fd, created)`` for the directory ``path`` strictly below root ``top``, reached from ``top`` one component
    at a time without following a link; every directory on the way belongs to this user (the last one may
    belong to one of ``leaf_owners``; ``check_leaf=False`` leaves the last one to the caller) and others cannot
    write to it. With ``create``, missing directories are made (0755; the root too, never its parents);
    without it, ``(None, False)`` when one is missing. The caller closes ``fd``. Raises :class:`UnsafePath`."""
    if not below(path, top):
        raise UnsafePath(what, f"{path} is not below {top}")
    me = {os.geteuid()}
    fd = _open_dir(top, what, top)
    if fd is None:
        if not create:
            return None, False
        made = _mkdir(top)
        fd = _open_dir(top, what, top)
        if made:
            os.fchmod(fd, 0o755)  # not narrowed by the umask: a Caddy that is not root must get through
    created = False
    try:
        _check_dir(fd, what, top, me)
        parts = path[len(top) + 1 :].split("/")
        shown = top
        for i, name in enumerate(parts):
            shown = f"{shown}/{name}"
            last = i == len(parts) - 1
            child = _open_dir(name, what, shown, dir_fd=fd)
            if child is None:
                if not create:
                    os.close(fd)
                    return None, False
                made = _mkdir(name, dir_fd=fd)
                child = _open_dir(name, what, shown, dir_fd=fd)
                if made:
                    os.fchmod(child, 0o755)  # not narrowed by the umask: a Caddy that is not root must get through
                    created = last
            os.close(fd)
            fd = child
            if not last or check_leaf:
                _check_dir(fd, what, shown, me | (set(leaf_owners) if last else set()))
    except BaseException:
        os.close(fd)
        raise
    return fd, created


def _marked(fd):
    try:
        info = os.stat(MARK, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid()


def inspect_private_dir(path, top, what, uid=None):
    """What :func:`private_dir` would do to ``path``, reading only: ``("missing" | "ok" | "fix", fd)``
    (``fd`` open for "ok"/"fix", else None; the caller closes it). Raises :class:`UnsafePath` for a
    directory hecate may not change that is not already mode 0700 owned by ``uid`` (this user when None)."""
    owner = os.geteuid() if uid is None else uid
    fd, _ = open_below(path, top, what, check_leaf=False)
    if fd is None:
        return "missing", None
    info = os.fstat(fd)
    mode = stat.S_IMODE(info.st_mode)
    if mode == 0o700 and info.st_uid == owner:
        return "ok", fd
    if _marked(fd) or (info.st_uid == os.geteuid() and not mode & 0o022 and not os.listdir(fd)):
        return "fix", fd  # hecate's own (a former owner's too), or empty and this user's
    os.close(fd)
    raise UnsafePath(
        what,
        f"{path} exists, was not created by hecate and is mode {mode:04o} owned by uid {info.st_uid}: "
        f"hecate changes only directories it created; make it mode 0700 owned by uid {owner}, or remove it",
    )


def private_dir(path, top, what, uid=None):
    """Open the directory ``path`` (strictly below ``top``) that holds private files, making it mode 0700 owned
    by ``uid`` (this user when None): created and marked as hecate's when missing; changed only when it
    carries hecate's mark, or is empty and this user's (then marked); otherwise it must already be so.
    Returns ``(fd, changed)``; the caller closes ``fd``. Raises :class:`UnsafePath`."""
    state, fd = inspect_private_dir(path, top, what, uid)
    if state == "missing":
        fd, _ = open_below(path, top, what, create=True)
        state = "fix"
    if state == "ok":
        return fd, False
    try:
        if not _marked(fd):
            write_file(fd, MARK, b"created by hecate: it may change this directory's mode and owner\n", 0o600)
        os.fchmod(fd, 0o700)
        os.fchown(fd, os.geteuid() if uid is None else uid, -1)
    except BaseException:
        os.close(fd)
        raise
    return fd, True


def read_file(dir_fd, name):
    """``(bytes, stat)`` of the regular file ``name`` in ``dir_fd`` (never through a link), or ``(None, None)``."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return None, None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        return (handle.read(), info) if stat.S_ISREG(info.st_mode) else (None, None)


def write_file(dir_fd, name, data, mode, uid=None):
    """Write ``name`` in ``dir_fd`` through ``<name>.hecate-tmp`` (created exclusively, never through a link: a stale
    temporary name is removed first), with ``mode`` and owner ``uid``, fsync, and a rename in the same
    directory: a failure leaves the previous file as it was. Raises OSError (naming the file, no content)."""
    tmp = f"{name}.hecate-tmp"
    try:
        os.unlink(tmp, dir_fd=dir_fd)  # unlink removes a planted link itself, never what it points to
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)  # the umask narrows O_CREAT's mode
            if uid is not None:
                os.fchown(handle.fileno(), uid, -1)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
        raise


def write_private(path, text):
    """Write ``text`` to ``path`` (mode 0600) through ``<path>.tmp`` and a rename: a crash never leaves half a
    file. For hecate's own files below directories only its user writes (cachedir, snapshots, records)."""
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove_file(dir_fd, name):
    """Remove ``name`` from ``dir_fd`` (a link is removed itself); whether it was there."""
    try:
        os.unlink(name, dir_fd=dir_fd)
        return True
    except FileNotFoundError:
        return False


__all__ = [
    "ALLOC",
    "MARK",
    "PREFIX_OPTION",
    "ROOTS",
    "HostPath",
    "UnsafePath",
    "below",
    "check_owner_name",
    "check_owner_uid",
    "check_pillar",
    "inspect_private_dir",
    "open_below",
    "prefix",
    "private_dir",
    "read_file",
    "remove_file",
    "root",
    "under_some_root",
    "well_formed",
    "write_file",
]
