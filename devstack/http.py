"""Requests through Caddy by Host header (and SNI), from 127.0.0.1."""

import http.client
import json
import socket
import ssl
import threading


def serve(server):
    """``server.serve_forever()`` on a daemon thread, polling every 0.05 s: its ``shutdown()`` then returns
    at once instead of waiting out the default 0.5 s poll (every stopped test server paid it)."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return thread


def get(port, host, path="/", headers=None, tls_ca=None, timeout=10):
    """GET http(s)://127.0.0.1:port<path> with Host (and SNI) = host. Returns (status, headers, body) or
    raises ConnectionError when Caddy closes the connection without an answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls_ca is not None:
        context = ssl.create_default_context(cadata=tls_ca)
        sock = context.wrap_socket(sock, server_hostname=host)
    conn.sock = sock
    send = {"Host": host, "User-Agent": "hecate-tests/1.0"}
    send.update(headers or {})
    try:
        conn.request("GET", path, headers=send)
        response = conn.getresponse()
        body = response.read()
    except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
        raise ConnectionError(f"closed without an answer: {exc}") from exc
    finally:
        conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def backend_of(body):
    return json.loads(body.decode().strip())["backend"]
