"""A vendor that echoes the API token back in an error body, in every spelling: none of it may reach an
exception, its body, a state's comment or the log (``hecatelib.api``: redaction, bounded excerpts)."""

import base64
import json
import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest

from devstack.http import serve
from hecatelib import api

TOKEN = "hEcAtE-s3cr3t-T0ken-4f2a9c"


def spellings(token):
    raw = token.encode()
    return {
        "as is": token,
        "lower": token.lower(),
        "upper": token.upper(),
        "base64": base64.b64encode(raw).decode(),
        "base64 url-safe, no padding": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "basic credential": base64.b64encode(b"hecate:" + raw).decode(),
        "bearer, base64": base64.b64encode(b"Bearer " + raw).decode(),
        "url-encoded": quote(f"token={token}/x", safe=""),
        "hex": raw.hex(),
        "HEX": raw.hex().upper(),
    }


def leaks(text):
    """The spellings of TOKEN found in ``text`` (the token's inner part, for encodings that wrap it)."""
    text = str(text)
    found = [name for name, form in spellings(TOKEN).items() if form in text or form.lower() in text.lower()]
    # encodings inside a longer base64 text: the groups made only of the token's bytes
    for prefix in (b"hecate:", b"Bearer "):
        encoded = base64.b64encode(prefix + TOKEN.encode()).decode()
        if encoded[12:-4] in text:
            found.append(f"base64 core after {prefix!r}")
    return found


class Echo(BaseHTTPRequestHandler):
    """Answers every request with an error that quotes the caller's token in every spelling."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        if self.path.endswith("/huge/"):
            body = (("x" * 5000) + token.lower()).encode() * 40  # 200 KB of text, the token inside
            status, kind = 500, "text/plain"
        else:
            body = json.dumps({"detail": f"token {token} refused", **spellings(token)}).encode()
            status, kind = 400, "application/json"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def echo():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True
    serve(server)
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_echo_really_echoes_every_spelling(echo):
    import requests

    text = requests.get(f"{echo}/x/", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).text
    assert len(leaks(text)) >= len(spellings(TOKEN))  # so the assertions below can fail


@pytest.mark.parametrize("path", ["x/", "huge/"])
def test_api_errors_carry_no_form_of_the_token(echo, caplog, path):
    client = api.ApiClient(echo, "vendor", token=TOKEN, read_retries=1, backoff=0.01)
    with caplog.at_level(logging.DEBUG), pytest.raises(api.ApiError) as info:
        client.get(path)
    assert info.value.status in (400, 500)
    assert leaks(str(info.value)) == [] and leaks(repr(info.value.body)) == [] and leaks(caplog.text) == []
    assert len(str(info.value)) < api.EXCERPT + 200  # a bounded excerpt, not 200 KB


def test_a_state_comment_carries_no_form_of_the_token(echo, make_loaders, caplog):
    pillar = {"hecate": {"authentik": {"url": echo, "token": TOKEN, "allow_insecure_endpoint": True}}}
    loaders = make_loaders(pillar)
    with caplog.at_level(logging.DEBUG):
        result = loaders.states.authentik.group_present(name="admins")
    assert result.result is False and "HTTP 400" in result.comment
    assert leaks(result.comment) == [] and leaks(result.changes) == [] and leaks(caplog.text) == []
