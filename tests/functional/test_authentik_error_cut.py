"""authentik's non-JSON error text is redacted before it is cut to an excerpt: a token that straddles the
cut never leaves a part of itself in the error, its body, a state comment or the log (issue 15 item 7)."""

import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from salt.exceptions import CommandExecutionError

from devstack.http import serve

TOKEN = "hEcAtE-s3cr3t-T0ken-4f2a9c"
CUT = 500  # what _modules/authentik.py keeps of a non-JSON error body


class Straddles(BaseHTTPRequestHandler):
    """A 404 in plain text that echoes the caller's token across character CUT."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        body = ("x" * (CUT - 10) + token + " refused" + "y" * 300).encode()
        self.send_response(404)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def straddles():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Straddles)
    server.daemon_threads = True
    serve(server)
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def parts(text):
    """Pieces of TOKEN (8 characters or more, from either end) found in ``text``."""
    text = str(text).lower()
    pieces = {TOKEN[:n] for n in range(8, len(TOKEN) + 1)} | {TOKEN[-n:] for n in range(8, len(TOKEN) + 1)}
    return sorted(piece for piece in pieces if piece.lower() in text)


def test_a_token_across_the_cut_leaves_no_part_of_itself(straddles, make_loaders, caplog):
    pillar = {"hecate": {"authentik": {"url": straddles, "token": TOKEN, "allow_insecure_endpoint": True}}}
    loaders = make_loaders(pillar)
    with caplog.at_level(logging.DEBUG), pytest.raises(CommandExecutionError) as info:
        loaders.modules.authentik.version()
    message = str(info.value)
    assert parts(message) == [] and parts(getattr(info.value, "body", "")) == [] and parts(caplog.text) == []
    assert "HTTP 404" in message and "<redacted>" in message, message
    assert len(message) < 1000  # still an excerpt

    result = loaders.states.authentik.group_present(name="admins")
    assert result.result is False and "HTTP 404" in result.comment
    assert parts(result.comment) == [] and parts(result.changes) == []
