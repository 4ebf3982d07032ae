"""One small HTTP client for every vendor API hecate talks to (authentik, Hetzner, Nomad, Consul...).

Why one: the rules are the same everywhere and easy to get wrong in five places. TLS verification
is on unless the caller turns it off by name; tokens travel only in headers and are scrubbed, in every
encoding an API might echo them in, from every error text and body, and a vendor's error text is quoted
only as a bounded excerpt; reads are retried on 5xx and connection errors with backoff, writes never are
(a write that timed out may have happened: the caller re-reads instead).
"""

import base64
import ipaddress
import logging
import os
import re
import time
from urllib.parse import quote, quote_plus, urlsplit

import requests
from salt.exceptions import CommandExecutionError

from hecatelib.errors import ApiError

log = logging.getLogger(__name__)

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


EXCERPT = 600  # characters of a vendor's error text quoted in a message, at most (after redaction)


def secret_forms(secret):
    """Every spelling of ``secret`` an API may echo back: as is (any case: matched case-insensitively),
    URL-encoded, hex, and base64 (standard and URL-safe; alone, or inside a longer base64 text such as a
    ``Basic`` credential, where only the groups made of the secret's own bytes are fixed)."""
    raw = secret.encode()
    forms = {secret, quote(secret, safe=""), quote_plus(secret), raw.hex()}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        alone = encode(raw).decode()
        forms.update({alone, alone.rstrip("=")})
        for shift in range(3):  # the secret's offset inside the encoded bytes, modulo 3
            text = encode(b"\0" * shift + raw).decode().rstrip("=")
            start = 4 if shift else 0  # the first group mixes in the bytes before the secret
            end = len(text) - (4 if (shift + len(raw)) % 3 else 0)  # the last one, the bytes after it
            core = text[start:end]
            if len(core) >= 8:
                forms.add(core)
    return {form for form in forms if len(form) >= 4}


def redact(text, secrets):
    """Replace every form of every secret in ``text`` (see :func:`secret_forms`) by ``<redacted>``."""
    text = str(text)
    forms = set()
    for secret in secrets:
        if secret and isinstance(secret, str) and len(secret) >= 4:
            forms |= secret_forms(secret)
    if not forms:
        return text
    pattern = "|".join(re.escape(form) for form in sorted(forms, key=len, reverse=True))
    return re.sub(pattern, "<redacted>", text, flags=re.IGNORECASE)


def excerpt(text, secrets, limit=EXCERPT):
    """``text`` redacted, then cut to ``limit`` characters: what a message may quote of a vendor's answer
    (redacting first, so a cut never leaves half a secret)."""
    text = redact(text, secrets)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"


def scrub(value, secrets):
    """A parsed JSON body with every string (keys too) redacted: safe to keep on an exception."""
    if isinstance(value, dict):
        return {scrub(k, secrets): scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, secrets) for v in value]
    if isinstance(value, str):
        return redact(value, secrets)
    return value


def check_token(value, what):
    """Refuse a missing token, or one that still is an unresolved ``vault:``/``consul:`` reference."""
    if not value:
        raise CommandExecutionError(f"{what} is not set (pillar or minion config)")
    if isinstance(value, str) and value.split(":", 1)[0] in ("vault", "consul") and ":" in value:
        raise CommandExecutionError(
            f"{what} is an unresolved {value.split(':', 1)[0]}: reference; enable the hecate ext_pillar "
            "on the master (see README, 'Secrets') or put the value in pillar"
        )
    return value


class ApiClient:
    """A JSON API client bound to one base URL.

    ``headers`` carries authentication; ``secrets`` lists values to scrub from errors (the token is
    added automatically when passed as ``token``).
    """

    def __init__(
        self,
        base_url,
        name,
        headers=None,
        token=None,
        token_header="Authorization",
        token_prefix="Bearer ",
        verify=True,
        timeout=15,
        read_retries=3,
        backoff=0.5,
        session=None,
    ):
        self.base_url = base_url.rstrip("/")
        self.name = name
        self.verify = verify
        self.timeout = timeout
        self.read_retries = read_retries
        self.backoff = backoff
        self.session = session or requests.Session()
        self.headers = dict(headers or {})
        self.secrets = []
        if token:
            self.headers[token_header] = f"{token_prefix}{token}"
            self.secrets.append(token)
        self.request_count = 0

    def url(self, path):
        return path if path.startswith(("http://", "https://")) else f"{self.base_url}/{path.lstrip('/')}"

    def request(self, method, path, params=None, json=None, data=None, headers=None, ok=(200, 201, 202, 204)):
        """Send one request; return the ``requests.Response``. Raises :class:`ApiError` otherwise."""
        method = method.upper()
        attempts = 1 + (self.read_retries if method in READ_METHODS else 0)
        last_error = None
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.backoff * (2 ** (attempt - 1)))
            try:
                self.request_count += 1
                response = self.session.request(
                    method,
                    self.url(path),
                    params=params,
                    json=json,
                    data=data,
                    headers={**self.headers, **(headers or {})},
                    verify=self.verify,
                    timeout=self.timeout,
                )
            except requests.Timeout as exc:
                last_error = ApiError(self._say(method, path, f"timed out: {exc}"), timed_out=True)
                continue
            except requests.RequestException as exc:
                last_error = ApiError(self._say(method, path, f"unreachable: {exc}"))
                continue
            if response.status_code in ok:
                return response
            error = self.error(method, path, response)
            error.body = scrub(error.body, self.secrets)  # the message is redacted by _say; the body too
            if response.status_code >= 500 and method in READ_METHODS:
                last_error = error
                continue
            raise error
        raise last_error

    def json(self, method, path, **kwargs):
        response = self.request(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError(self._say(method, path, f"answered non-JSON: {exc}"), response.status_code) from exc

    def get(self, path, **kwargs):
        return self.json("GET", path, **kwargs)

    def error(self, method, path, response):
        """Build the ApiError for an unexpected status; subclasses add vendor hints."""
        try:
            body = response.json()
        except ValueError:
            body = response.text
        hint = ""
        if response.status_code in (401, 403):
            hint = " (is the token valid, unexpired and allowed to do this?)"
        return ApiError(self._say(method, path, f"HTTP {response.status_code}: {body}{hint}"), response.status_code, body)

    def _say(self, method, path, what):
        return excerpt(f"{self.name}: {method} {self.url(path)} {what}", self.secrets)


def read_token(cfg, env_name, what):
    """A token from ``cfg``: ``token``, else the file ``token_file``, else the environment variable ``env_name``."""
    if cfg.get("token"):
        return str(cfg["token"])
    if cfg.get("token_file"):
        try:
            with open(cfg["token_file"], encoding="utf-8") as handle:
                return handle.read().strip()
        except OSError as exc:
            raise CommandExecutionError(f"{what} token_file {cfg['token_file']}: {exc.strerror}") from None
    return (os.environ.get(env_name) if env_name else None) or None


def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_URL = re.compile(r"^(https?)://([^/?#\s]+)(/[^?#\s]*)?$")


def endpoint_problem(url, allow_insecure=False, setting="allow_insecure_endpoint", local_agent=False):
    """Why ``url`` may not receive a token, or None: the one endpoint rule of every API hecate calls. HTTPS;
    plain HTTP only where the pillar says ``allow_insecure_endpoint: true`` (``setting`` names that key in the
    reason: a lab, a local emulator), or, for a ``local_agent`` (Consul and Vault, normally an agent on this
    host), to loopback."""
    match = _URL.match(str(url or ""))
    if not match:
        return f"{url!r} is not a URL (http(s)://host[:port][/path])"
    if match.group(1) == "https" or allow_insecure is True:
        return None
    if local_agent and is_loopback(urlsplit(url).hostname or ""):
        return None
    return f"{url!r} is not HTTPS: the token would travel in clear text; set {setting}: true only for a lab or a local emulator"


def check_endpoint(url, allow_insecure=False, setting="allow_insecure_endpoint", local_agent=False):
    """:func:`endpoint_problem`, raised as a ``CommandExecutionError``."""
    problem = endpoint_problem(url, allow_insecure, setting, local_agent)
    if problem:
        raise CommandExecutionError(problem)


def client_for(context, key, settings, token, build):
    """The one way a loader module keeps its API client: one per settings and token in ``__context__``
    (``key``), so the calls of one state run share one HTTP session and its kept-alive connections, and a
    changed setting or token gets a new client. ``build()`` makes it."""
    cache_key = (repr(sorted((k, repr(v)) for k, v in settings.items())), hash(token))
    cached = context.get(key)
    if cached and cached[0] == cache_key:
        return cached[1]
    client = build()
    context[key] = (cache_key, client)
    return client
