"""Custom certificates (internal domains, a company CA): pillar ``hecate:reverse_proxy:caddy:tls:certificates``.

Each entry names a PEM certificate (chain, leaf first) and its PEM private key, literally or as a
``vault:``/``consul:`` reference that the ext_pillar resolves on the master. They reach Caddy as files on
the edge (``tls.dir``, below ``/etc/hecate``, mode 0700; each file 0600; see ``hecatelib.paths``), written
before the config that names them, and Caddy loads them with ``tls.certificates.load_files``: the key never
enters Caddy's JSON config, which flows into snapshots, the run file on the master, the drift cache and
Caddy's autosave.

File names carry the certificate's SHA-256 fingerprint (public): a rotation writes new files beside
the old ones and changes the config, so Caddy reloads and loads the new pair, while a rollback to the
snapshot still finds the old pair; files no config names any more are removed after a good run.

Caddy picks a loaded certificate by SNI among its names (certmagic's cache), and its automatic HTTPS
does not obtain a certificate for a host that a loaded one already covers (``automaticHTTPSPhase1`` in
``modules/caddyhttp/autohttps.go``: "skipping automatic certificate management because one or more
matching certificates are already loaded", ``TLS.HasCertificateForSubject`` in ``modules/caddytls/tls.go``
checks the certificates this config loaded). hecate's TLS policy may still list such a host: a policy
only says how to manage a name that is managed, it does not make Caddy manage it.

Nothing here logs, and no message quotes a key: errors name the key path and the reason only.
"""

import dataclasses
import datetime
import hashlib
import os
import pwd
import re
import stat

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from hecatelib import paths
from hecatelib.spec import Secret, Str, key

CERTIFICATES = "hecate:reverse_proxy:caddy:tls:certificates"
DEFAULT_DIR = "/etc/hecate/tls"
ID_PREFIX = "hecate_cert_"
WARN_DAYS = 14
# PEM text: armour lines, base64, and the headers of an encrypted legacy key (Proc-Type, DEK-Info)
_PEM_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=:,- \t\r\n")
MAX_PEM = 200_000
_FILE = re.compile(r"\A[a-z0-9][a-z0-9_-]{0,62}-[0-9a-f]{16}\.(crt|key)\Z")  # what hecate writes: <name>-<fp>.crt|key
REFS = ("vault:", "consul:")


class CertError(ValueError):
    """A certificate entry cannot be used: ``path`` and ``reason``, never a key."""

    def __init__(self, path, reason):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def _looks_pem(text):
    """Armour lines around base64 (no regular expression: linear in a hostile pillar's megabyte)."""
    body = text.strip()
    return (
        len(text) <= MAX_PEM
        and body.startswith("-----BEGIN ")
        and body.endswith("-----")
        and "-----END " in body
        and set(body) <= _PEM_CHARS
    )


def is_ref(value):
    return isinstance(value, str) and value.startswith(REFS)


class PemCertificate(Str):
    """A PEM certificate (chain, leaf first) or a ``vault:``/``consul:`` reference. Public, but never quoted:
    a message names the path and the reason, not kilobytes of base64."""

    def __init__(self):
        super().__init__(safe=False, max_len=MAX_PEM)

    def __call__(self, value, path, report):
        value = super().__call__(value, path, report)
        if isinstance(value, str) and not is_ref(value) and not _looks_pem(value):
            report.error(path, "is not PEM text (-----BEGIN CERTIFICATE----- ...) nor a vault:/consul: reference")
        return value


class PemKey(Secret):
    """A PEM private key or a ``vault:``/``consul:`` reference: a :class:`Secret` (records and plans strip
    it) that may span lines. Never echoed."""

    def __call__(self, value, path, report):
        if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
            report.error(path, "must be a string (a PEM private key or a vault:/consul: reference)")
            return value
        value = str(value)
        if is_ref(value):
            return super().__call__(value, path, report)
        if not _looks_pem(value):
            report.error(
                path, "is not PEM text (-----BEGIN PRIVATE KEY----- ...) nor a vault:/consul: reference (value not shown: it is a secret)"
            )
        return value


@dataclasses.dataclass(frozen=True)
class Certificate:
    """One parsed pillar certificate. The PEM texts stay out of ``repr`` (and so out of any log line)."""

    name: str
    fingerprint: str  # SHA-256 of the leaf's DER, hex
    names: tuple  # the DNS names it serves (SANs, and the CN as certmagic reads it)
    subject: str
    issuer: str
    not_before: datetime.datetime
    not_after: datetime.datetime
    certificate_pem: bytes = dataclasses.field(repr=False)
    key_pem: bytes = dataclasses.field(repr=False, default=None)

    def paths(self, directory):
        stem = os.path.join(directory, f"{self.name}-{self.fingerprint[:16]}")
        return f"{stem}.crt", f"{stem}.key"

    def covers(self, domain):
        """Whether Caddy would serve it for SNI ``domain``: a name equal to it, or a ``*.`` name one label up."""
        domain = domain.lower().rstrip(".")
        parent = domain.partition(".")[2]
        return any(name == domain or (name.startswith("*.") and name[2:] == parent) for name in self.names)


def _leaf(text, path):
    try:
        chain = x509.load_pem_x509_certificates(text.encode())
    except ValueError:
        raise CertError(path, "is not a PEM certificate Caddy can load") from None
    return chain[0]


def _names(leaf):
    names = [a.value for a in leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    try:
        names += leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        pass
    return tuple(dict.fromkeys(str(n).lower().rstrip(".") for n in names))


def _private_key(text, path):
    """The key object; every failure reads the same and quotes nothing (parsers' messages may echo data)."""
    if "ENCRYPTED" in text:
        raise CertError(path, "is an encrypted private key; Caddy loads unencrypted keys only (value not shown: it is a secret)")
    try:
        return serialization.load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):  # one answer whatever the parser says: its message may echo data
        raise CertError(path, "is not a PEM private key Caddy can load (value not shown: it is a secret)") from None


def _public(obj):
    return obj.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def parse(name, entry, with_key=False):
    """``entry`` (``{certificate, key}``) as a :class:`Certificate`; with ``with_key`` the key too, checked
    against the certificate. Raises :class:`CertError` naming the key path; a reference the ext_pillar did
    not resolve is one."""
    where = key(CERTIFICATES, name)
    fields = ("certificate", "key") if with_key else ("certificate",)
    for field in fields:
        if is_ref(entry.get(field)):
            scheme = entry[field].split(":")[0]
            raise CertError(
                key(where, field), f"a {scheme}: reference that was not resolved (the hecate ext_pillar resolves it on the master)"
            )
    leaf = _leaf(entry["certificate"], key(where, "certificate"))
    key_pem = None
    if with_key:
        private = _private_key(entry["key"], key(where, "key"))
        if _public(private) != _public(leaf):
            subject = leaf.subject.rfc4514_string()[:120]
            raise CertError(key(where, "key"), f"does not match the certificate ({subject}) (value not shown: it is a secret)")
        key_pem = _text(entry["key"])
    return Certificate(
        name=name,
        fingerprint=hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest(),
        names=_names(leaf),
        subject=leaf.subject.rfc4514_string(),
        issuer=leaf.issuer.rfc4514_string(),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        certificate_pem=_text(entry["certificate"]),
        key_pem=key_pem,
    )


def _text(pem):
    return (pem.strip() + "\n").encode()


def settings(tree):
    return tree["reverse_proxy"]["caddy"]["tls"]


def certificates(tree, with_key=False):
    """Every pillar certificate, parsed (see :func:`parse`), in name order."""
    return [parse(name, entry, with_key) for name, entry in sorted((settings(tree).get("certificates") or {}).items())]


def check_pillar(tree, report, now=None):
    """The checks that need the parsed PEM: certificate and key parse, the key matches, TLS is on; warnings
    for a certificate that has expired or ends within 14 days, and for one that covers no route's domain.
    A ``vault:``/``consul:`` value is checked where it is resolved (the ext_pillar on the master)."""
    caddy = tree["reverse_proxy"]["caddy"]
    entries = caddy["tls"].get("certificates") or {}
    if entries and caddy["tls"]["mode"] == "off":
        report.error(CERTIFICATES, "tls mode is off: Caddy serves plain HTTP and would never use these certificates")
        return
    now = now or datetime.datetime.now(datetime.timezone.utc)
    domains = [r["domain"] for r in caddy["routes"]]
    for name, entry in sorted(entries.items()):
        where = key(CERTIFICATES, name)
        if is_ref(entry.get("certificate")):
            continue
        try:
            cert = parse(name, entry, with_key=not is_ref(entry.get("key")))
        except CertError as exc:
            report.error(exc.path, exc.reason)
            continue
        days = (cert.not_after - now).total_seconds() / 86400
        if days < 0:
            report.warn(key(where, "certificate"), f"expired on {cert.not_after:%Y-%m-%d %H:%M} UTC")
        elif days < WARN_DAYS:
            report.warn(key(where, "certificate"), f"ends on {cert.not_after:%Y-%m-%d %H:%M} UTC, in {days:.1f} days")
        if not any(cert.covers(d) for d in domains):
            report.warn(where, f"covers none of the routes' domains (its names: {', '.join(cert.names)[:200] or 'none'})")


def alert(entry):
    """Whether a ``caddy.certs`` entry needs a person: it ends within the warning days and nobody renews it
    in time: a custom certificate (``managed`` false), or a managed one with less than a third of its
    lifetime left (Caddy renews before that, so its renewal is failing). Caddy's 12-hour internal
    certificates are always "expiring" and never an alert. Health and the drift beacon both ask this."""
    return bool(entry.get("expiring") and (entry.get("renewal_overdue") or entry.get("managed") is False))


def load_files(tree, directory=None):
    """Caddy's ``tls.certificates.load_files`` entries for the pillar certificates: paths only, each
    ``@id``'d ``hecate_cert_<name>`` (Caddy drops ``@id`` before decoding, ``RemoveMetaFields`` in admin.go)."""
    directory = directory or settings(tree).get("dir") or DEFAULT_DIR
    entries = []
    for cert in certificates(tree):
        crt, pem_key = cert.paths(directory)
        entries.append({"@id": f"{ID_PREFIX}{cert.name}", "certificate": crt, "key": pem_key, "format": "pem"})
    return entries


# -- files on the edge ------------------------------------------------------------------------------------
# Only below hecate's /etc/hecate root, reached without following a link (hecatelib.paths); the directory's
# mode and owner change only when hecate created it.
DIR_KEY = "hecate:reverse_proxy:caddy:tls:dir"
OWNER_KEY = "hecate:reverse_proxy:caddy:tls:owner"


def _owner(tree):
    """The uid to give the files (``tls.owner``), or None to leave them to the writing user (root). The owner
    must be a system account (:func:`hecatelib.paths.check_owner_uid`): it can read the private keys."""
    owner = settings(tree).get("owner")
    if not owner:
        return None
    try:
        uid = pwd.getpwnam(owner).pw_uid
    except KeyError:
        raise CertError(OWNER_KEY, f"no user {owner!r} on this machine") from None
    reason = paths.check_owner_uid(owner, uid)
    if reason:
        raise CertError(OWNER_KEY, f"{reason}; name the dedicated system account Caddy runs as")
    return uid


def plan_files(tree, root_prefix=""):
    """What the edge's certificate directory needs: ``{"write": [(path, data)], "remove": [path], "dir": str,
    "root": str, "fix_dir": bool, "uid": int|None}``. Reads only; raises :class:`hecatelib.paths.UnsafePath`
    (an OSError) for a directory hecate may not use. ``data`` holds the key: never log or return it."""
    directory = settings(tree).get("dir") or DEFAULT_DIR
    top = paths.root("etc", root_prefix)
    uid = _owner(tree)
    wanted = {}
    for cert in certificates(tree, with_key=True):
        crt, pem_key = cert.paths(directory)
        wanted[crt], wanted[pem_key] = cert.certificate_pem, cert.key_pem
    plan = {"write": [], "remove": [], "dir": directory, "root": top, "fix_dir": False, "uid": uid}
    if not paths.below(directory, top):
        if wanted:  # the validator refuses it; never write there anyway
            raise paths.UnsafePath(DIR_KEY, f"{directory} is not below {top}")
        return plan  # no certificates: nothing of hecate's can be there
    state, fd = paths.inspect_private_dir(directory, top, DIR_KEY, uid)
    try:
        present = sorted(os.listdir(fd)) if fd is not None else []
        plan["write"] = [(path, data) for path, data in wanted.items() if fd is None or not _same(fd, path, data, uid)]
    finally:
        if fd is not None:
            os.close(fd)
    plan["remove"] = [os.path.join(directory, n) for n in present if _FILE.match(n) and os.path.join(directory, n) not in wanted]
    plan["fix_dir"] = bool(wanted) and state != "ok"
    return plan


def _same(dir_fd, path, data, uid):
    content, info = paths.read_file(dir_fd, os.path.basename(path))
    return content == data and stat.S_IMODE(info.st_mode) == 0o600 and (uid is None or info.st_uid == uid)


def write_files(plan):
    """Write ``plan["write"]`` (hecatelib.paths.write_file: a temporary file created exclusively, 0600, fsync,
    rename): a failure leaves every file as it was. Returns the paths written. Raises OSError; the message
    names a path, never content."""
    if not plan["write"] and not plan["fix_dir"]:
        return []
    fd, _ = paths.private_dir(plan["dir"], plan["root"], DIR_KEY, plan["uid"])
    written = []
    try:
        for path, data in plan["write"]:
            paths.write_file(fd, os.path.basename(path), data, 0o600, plan["uid"])
            written.append(path)
    finally:
        os.close(fd)
    return written


def remove_files(plan):
    """Remove the files no config names any more (after a good run only). Returns the paths removed."""
    if not plan["remove"]:
        return []
    fd, _ = paths.open_below(plan["dir"], plan["root"], DIR_KEY, check_leaf=False)  # the plan inspected it
    if fd is None:
        return []
    try:
        return [path for path in plan["remove"] if paths.remove_file(fd, os.path.basename(path))]
    finally:
        os.close(fd)
