"""One small HTTP client for every vendor API hecate talks to (authentik, Hetzner, Nomad, Consul...).

Why one: the rules are the same everywhere and easy to get wrong in five places. TLS verification
is on unless the caller turns it off by name; tokens travel only in headers and are scrubbed from
every error text; reads are retried on 5xx and connection errors with backoff, writes never are
(a write that timed out may have happened: the caller re-reads instead).
"""

import logging
import time

import requests
from salt.exceptions import CommandExecutionError

log = logging.getLogger(__name__)

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class ApiError(CommandExecutionError):
    """A vendor API answered with an error (``status`` is the HTTP status, 0 for no answer)."""

    def __init__(self, message, status=0, body=None, timed_out=False):
        super().__init__(message)
        self.status = status
        self.body = body
        self.timed_out = timed_out


def redact(text, secrets):
    """Replace every secret value in ``text`` by ``<redacted>``."""
    text = str(text)
    for secret in secrets:
        if secret and isinstance(secret, str) and len(secret) >= 4:
            text = text.replace(secret, "<redacted>")
    return text


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
            body = response.text[:500]
        hint = ""
        if response.status_code in (401, 403):
            hint = " (is the token valid, unexpired and allowed to do this?)"
        return ApiError(self._say(method, path, f"HTTP {response.status_code}: {body}{hint}"), response.status_code, body)

    def _say(self, method, path, what):
        return redact(f"{self.name}: {method} {self.url(path)} {what}", self.secrets)
