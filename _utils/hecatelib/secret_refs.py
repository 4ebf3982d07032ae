"""Resolve ``vault:`` and ``consul:`` references inside the ``hecate`` pillar tree (on the master).

A pillar string value of the form

- ``vault:<mount>/<path>[#key]`` is read from Vault's KV version 2 engine with hvac:
  ``vault:secret/hecate/authentik/token`` reads mount ``secret``, path ``hecate/authentik/token``
  (``GET /v1/secret/data/hecate/authentik/token``). Without ``#key``: a secret with exactly one key
  gives that key's value, otherwise the key ``value``; anything else is an error that names the path.
- ``consul:<key>[#field]`` is read from Consul KV with py-consul; with ``#field`` the value is parsed as
  JSON and ``field`` taken from it.

``consul://service`` and ``vault://...`` are URLs (Caddy dynamic upstreams), not references.

Where Vault and Consul are comes from the master config (see docs/secrets.md)::

    hecate_ext_pillar:
      vault: {url: https://vault.example.org:8200, token_file: /etc/salt/hecate-vault-token, verify: true}
      consul: {host: 127.0.0.1, port: 8500, scheme: http, token_file: /etc/salt/hecate-consul-token}

Every error names the pillar key path (``hecate:dns:token``) and the reference, never the secret:
texts from hvac/py-consul/requests are scrubbed of tokens and of every value resolved so far.
"""

import copy
import json
import logging
import os
import re
import time
from dataclasses import dataclass

import requests
from salt.exceptions import CommandExecutionError

from hecatelib import consul
from hecatelib.api import check_endpoint, read_token, redact

log = logging.getLogger(__name__)

__all__ = [
    "Reference",
    "SecretError",
    "find_references",
    "is_reference",
    "parse_reference",
    "resolve",
    "settings",
    "vault_client",
]

CONFIG_KEY = "hecate_ext_pillar"
_VAULT_PATH = re.compile(r"^[A-Za-z0-9_.@-]+(/[A-Za-z0-9_.@-]+)+$")
_CONSUL_KEY = re.compile(r"^[A-Za-z0-9_.@:-]+(/[A-Za-z0-9_.@:-]+)*/?$")
_FIELD = re.compile(r"^[A-Za-z0-9_.-]+$")
DEFAULT_TIMEOUT = 10
DEFAULT_RETRIES = 2


class SecretError(CommandExecutionError):
    """References could not be resolved. ``problems`` is a list of ``(pillar key path, reason)``."""

    def __init__(self, problems):
        self.problems = list(problems)
        lines = [f"{path}: {reason}" for path, reason in self.problems]
        count = len(lines)
        super().__init__(f"cannot resolve {count} secret reference{'s' if count != 1 else ''} in pillar:\n  " + "\n  ".join(lines))


@dataclass(frozen=True)
class Reference:
    """A parsed reference. ``kind`` is ``vault`` or ``consul``; ``path`` is the whole path as written."""

    kind: str
    path: str
    key: str = None  # the #fragment, if any

    @property
    def text(self):
        return f"{self.kind}:{self.path}" + (f"#{self.key}" if self.key else "")


def is_reference(value):
    """True for a string that is meant as a ``vault:``/``consul:`` reference (well-formed or not)."""
    if not isinstance(value, str):
        return False
    for kind in ("vault", "consul"):
        if value.startswith(kind + ":") and not value.startswith(kind + "://"):
            return True
    return False


def parse_reference(value):
    """Parse ``vault:path[#key]`` / ``consul:key[#field]``; raises ``ValueError`` naming what is wrong."""
    if not is_reference(value):
        raise ValueError("not a vault: or consul: reference")
    kind, _, rest = value.partition(":")
    path, hashmark, key = rest.partition("#")
    if hashmark and not _FIELD.match(key):
        raise ValueError(f"{kind}: reference has an invalid #key (letters, digits, '_', '.', '-')")
    if kind == "vault":
        if not _VAULT_PATH.match(path) or ".." in path.split("/"):
            raise ValueError("a vault: reference needs <mount>/<path>[#key], e.g. vault:secret/hecate/dns/token")
    elif not path or not _CONSUL_KEY.match(path) or path.startswith("/") or ".." in path.split("/"):
        raise ValueError("a consul: reference needs a KV key, e.g. consul:hecate/nomad/token")
    return Reference(kind, path, key or None)


def _walk(node, path, visit):
    """Depth-first copy of ``node``; ``visit(path, string)`` returns the replacement for a string."""
    if isinstance(node, dict):
        return {k: _walk(v, f"{path}:{k}", visit) for k, v in node.items()}
    if isinstance(node, list):
        return [_walk(v, f"{path}[{i}]", visit) for i, v in enumerate(node)]
    if isinstance(node, str):
        return visit(path, node)
    return node


def find_references(tree, path="hecate"):
    """Every reference in ``tree`` as ``(key path, value as written)``, in document order."""
    found = []

    def visit(where, value):
        if is_reference(value):
            found.append((where, value))
        return value

    _walk(tree, path, visit)
    return found


# -- configuration ---------------------------------------------------------------------------------
def settings(opts, kind):
    """The ``hecate_ext_pillar:<kind>`` mapping from master (or minion) opts, or ``{}``."""
    section = (opts or {}).get(CONFIG_KEY) or {}
    value = section.get(kind) or {}
    if not isinstance(value, dict):
        raise CommandExecutionError(f"{CONFIG_KEY}:{kind} in the master config must be a mapping")
    return value


def vault_client(cfg):
    """An ``hvac.Client`` from a ``hecate_ext_pillar:vault`` mapping (``url``, ``token``/``token_file``,
    ``verify``, ``namespace``, ``timeout``). ``VAULT_ADDR``/``VAULT_TOKEN`` fill in what is not set."""
    import hvac

    url = cfg.get("url") or os.environ.get("VAULT_ADDR")
    if not url:
        raise CommandExecutionError(f"no Vault configured: set {CONFIG_KEY}:vault:url in the master config")
    check_endpoint(url, cfg.get("allow_insecure_endpoint"), f"{CONFIG_KEY}:vault:allow_insecure_endpoint", local_agent=True)
    token = read_token(cfg, "VAULT_TOKEN", f"{CONFIG_KEY}:vault")
    if not token:
        raise CommandExecutionError(f"no Vault token: set {CONFIG_KEY}:vault:token or token_file in the master config")
    return hvac.Client(
        url=url,
        token=token,
        verify=cfg.get("verify", True),
        timeout=cfg.get("timeout", DEFAULT_TIMEOUT),
        namespace=cfg.get("namespace"),
    )


# -- resolution ------------------------------------------------------------------------------------
class _Unavailable(Exception):
    """The backend itself is down (unreachable, sealed): no point asking it again in this run."""


class _Resolver:
    def __init__(self, opts, vault=None, consul=None):
        self.opts = opts or {}
        self.vault_cfg = settings(self.opts, "vault")
        self.consul_cfg = settings(self.opts, "consul")
        self._vault, self._consul = vault, consul
        self.cache = {}  # (kind, path) -> data or an exception text
        self.down = {}  # kind -> reason
        self.secrets = []  # every value read, to scrub from error texts
        self.reads = {"vault": 0, "consul": 0}

    # clients are built lazily: a tree without references needs no backend at all
    def client(self, kind):
        if kind == "vault":
            if self._vault is None:
                self._vault = vault_client(self.vault_cfg)
                self.secrets.append(self._vault.token)
            return self._vault
        if self._consul is None:
            self._consul = consul.client(self.consul_cfg)
            self.secrets.append(self._consul.token)
        return self._consul

    def scrub(self, text):
        return redact(text, [s for s in self.secrets if s])

    def retries(self, kind):
        cfg = self.vault_cfg if kind == "vault" else self.consul_cfg
        return int(cfg.get("retries", DEFAULT_RETRIES))

    def fetch(self, ref):
        """The raw data behind ``ref`` (a dict for Vault, bytes for Consul); raises ValueError(reason)."""
        slot = (ref.kind, ref.path)
        if slot not in self.cache:
            if ref.kind in self.down:
                self.cache[slot] = ValueError(self.down[ref.kind])
            else:
                try:
                    self.cache[slot] = self._read(ref)
                except _Unavailable as exc:
                    self.down[ref.kind] = str(exc)
                    self.cache[slot] = ValueError(str(exc))
                except ValueError as exc:
                    self.cache[slot] = exc
        found = self.cache[slot]
        if isinstance(found, Exception):
            raise found
        return found

    def _read(self, ref):
        attempts = 1 + self.retries(ref.kind)
        for attempt in range(attempts):
            try:
                if ref.kind == "vault":
                    return self._read_vault(ref)
                return self._read_consul(ref)
            except _Unavailable:
                if attempt + 1 >= attempts:
                    raise
                time.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _read_vault(self, ref):
        import hvac.exceptions

        client = self.client("vault")
        mount, sub = self.split_mount(ref.path)
        where = f"Vault at {client.url}"
        self.reads["vault"] += 1
        try:
            answer = client.secrets.kv.v2.read_secret_version(path=sub, mount_point=mount, raise_on_deleted_version=True)
        except hvac.exceptions.Forbidden:
            raise ValueError(
                f"{where} denied reading {mount}/data/{sub} (permission denied: is the token valid and allowed to read it?)"
            ) from None
        except hvac.exceptions.InvalidPath as exc:
            data = _vault_body(exc).get("data")
            meta = data.get("metadata") if isinstance(data, dict) else None
            meta = meta if isinstance(meta, dict) else {}
            if meta.get("destroyed"):
                raise ValueError(f"version {meta.get('version')} of {ref.path} is destroyed in Vault") from None
            if meta.get("deletion_time"):
                raise ValueError(
                    f"the latest version ({meta.get('version')}) of {ref.path} is deleted in Vault; undelete it or write a new version"
                ) from None
            detail = self.scrub(_vault_reason(exc, fallback=False))
            raise ValueError(
                f"no secret at {ref.path} in {where} (KV v2 mount {mount!r}, path {sub!r})" + (f": {detail}" if detail else "")
            ) from None
        except (hvac.exceptions.VaultDown, hvac.exceptions.VaultNotInitialized) as exc:
            raise _Unavailable(f"{where} is sealed or not initialised ({type(exc).__name__})") from None
        except (hvac.exceptions.InternalServerError, hvac.exceptions.BadGateway) as exc:
            raise _Unavailable(f"{where} failed: {type(exc).__name__}: {self.scrub(_vault_reason(exc))}") from None
        except hvac.exceptions.VaultError as exc:
            raise ValueError(f"{where} refused reading {ref.path}: {type(exc).__name__}: {self.scrub(_vault_reason(exc))}") from None
        except requests.exceptions.Timeout:
            raise _Unavailable(f"{where} did not answer in time (timeout)") from None
        except requests.exceptions.RequestException as exc:
            raise _Unavailable(f"{where} is unreachable ({type(exc).__name__})") from None
        data = ((answer or {}).get("data") or {}).get("data")
        if not isinstance(data, dict):
            raise ValueError(f"{where} answered without data for {ref.path} (is {mount!r} a KV version 2 mount?)")
        self.secrets.extend(str(v) for v in data.values() if isinstance(v, (str, int, float)))
        return data

    def split_mount(self, path):
        for mount in sorted(self.vault_cfg.get("mounts") or [], key=len, reverse=True):
            mount = mount.strip("/")
            if path.startswith(mount + "/"):
                return mount, path[len(mount) + 1 :]
        mount, _, sub = path.partition("/")
        return mount, sub

    def _read_consul(self, ref):
        import consul.exceptions

        client = self.client("consul")
        where = f"Consul at {client.hecate_address}"
        self.reads["consul"] += 1
        try:
            _, entry = client.kv.get(ref.path)
        except consul.exceptions.ACLPermissionDenied:
            raise ValueError(f"{where} denied reading key {ref.path} (is the token allowed key:read on it?)") from None
        except consul.exceptions.ACLDisabled as exc:
            raise ValueError(f"{where} refused: {self.scrub(exc)}") from None
        except consul.exceptions.ConsulException as exc:
            text = str(exc)
            if text[:1] == "5":
                raise _Unavailable(f"{where} failed: {self.scrub(text)[:200]}") from None
            raise ValueError(f"{where} refused reading key {ref.path}: {self.scrub(text)[:200]}") from None
        except requests.exceptions.Timeout:
            raise _Unavailable(f"{where} did not answer in time (timeout)") from None
        except requests.exceptions.RequestException as exc:
            raise _Unavailable(f"{where} is unreachable ({type(exc).__name__})") from None
        if entry is None:
            raise ValueError(f"no key {ref.path} in {where}")
        if entry.get("Value") is None:
            raise ValueError(f"key {ref.path} in {where} has no value")
        self.secrets.append(entry["Value"].decode("utf-8", "replace"))
        return entry["Value"]

    def value(self, ref):
        data = self.fetch(ref)
        if ref.kind == "vault":
            if ref.key:
                if ref.key not in data:
                    raise ValueError(f"the secret {ref.path} has no key {ref.key!r} (it has: {_names(data)})")
                return data[ref.key]
            if len(data) == 1:
                return next(iter(data.values()))
            if "value" in data:
                return data["value"]
            raise ValueError(
                f"the secret {ref.path} has {len(data)} keys ({_names(data)}) and none is 'value': "
                f"name one, e.g. vault:{ref.path}#{sorted(data)[0] if data else 'key'}"
            )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"key {ref.path} in Consul is not UTF-8 text") from None
        if not ref.key:
            return text
        try:
            parsed = json.loads(text)
        except ValueError:
            raise ValueError(f"key {ref.path} in Consul is not JSON, so #{ref.key} cannot be taken from it") from None
        if not isinstance(parsed, dict) or ref.key not in parsed:
            raise ValueError(f"key {ref.path} in Consul has no field {ref.key!r}")
        return parsed[ref.key]


# hvac's error shapes in the supported range (setup.cfg: hvac>=1.1,<3). ``RawAdapter._raise_for_error``
# (hvac/adapters.py) parses the body only when Content-Type is exactly ``application/json``; then
# ``errors`` is the body's ``errors`` (a list, possibly empty, or absent: None) and ``exc.json`` the body;
# otherwise ``exc.json`` is None and the message is the raw text (``exc.text``). ``VaultError``
# (hvac/exceptions.py) has ``json``/``text`` only since 1.1.0, and ``utils.raise_for_error`` documents
# ``errors`` as "list | str".
MAX_REASON = 300  # characters of a Vault error text shown; an error page is not echoed whole


def _vault_body(exc):
    """The JSON object Vault answered with: ``exc.json``, else ``exc.text`` parsed, else ``{}``."""
    body = getattr(exc, "json", None)
    if body is None:
        try:
            body = json.loads(getattr(exc, "text", None) or "null")
        except (TypeError, ValueError):
            body = None
    return body if isinstance(body, dict) else {}


def _vault_reason(exc, fallback=True):
    """Vault's error texts joined (``exc.errors`` as a list or a string, else the body's ``errors``), cut to
    ``MAX_REASON``; with ``fallback`` the exception's own text when there are none."""
    errors = getattr(exc, "errors", None)
    if errors is None:
        errors = _vault_body(exc).get("errors")
    if isinstance(errors, str):
        errors = [errors]
    text = "; ".join(str(e) for e in errors if e) if isinstance(errors, list) else ""
    if not text and fallback:
        text = str(exc.args[0]) if exc.args and exc.args[0] else type(exc).__name__
    return text if len(text) <= MAX_REASON else text[:MAX_REASON] + f"... ({len(text)} characters)"


def _names(data):
    return ", ".join(sorted(map(str, data))) or "none"


def resolve(tree, opts, path="hecate", vault=None, consul=None):
    """Return a copy of ``tree`` with every ``vault:``/``consul:`` reference replaced by its value.

    ``opts``: master opts carrying ``hecate_ext_pillar: {vault: {...}, consul: {...}}``. ``path`` is the
    key path of ``tree`` used in messages. ``vault``/``consul`` take ready clients (tests, runner).
    A tree without references is returned (copied) without any I/O. Raises :class:`SecretError`
    listing every reference that failed, by key path; the message never contains a secret.
    """
    refs = find_references(tree, path)
    if not refs:
        return copy.deepcopy(tree)
    resolver = _Resolver(opts, vault=vault, consul=consul)
    problems = []

    def visit(where, value):
        if not is_reference(value):
            return value
        try:
            ref = parse_reference(value)
        except ValueError as exc:
            problems.append((where, f"{value}: {exc}"))
            return value
        try:
            return resolver.value(ref)
        except (ValueError, CommandExecutionError) as exc:
            problems.append((where, f"{ref.text}: {resolver.scrub(exc)}"))
            return value

    resolved = _walk(tree, path, visit)
    log.debug(
        "hecate secrets: %d references, %d Vault reads, %d Consul reads, %d problems",
        len(refs),
        resolver.reads["vault"],
        resolver.reads["consul"],
        len(problems),
    )
    if problems:
        raise SecretError(problems)
    return resolved
