"""A recording reverse proxy on 127.0.0.1: every request is forwarded to a real server and kept in
``requests`` (``reads``, ``writes``, ``reset_counts()`` as the emulators have them), so a test counts what
hecate sends to a real vendor API the way it counts an emulator's."""

from urllib.parse import urlencode

import requests

from devstack.emulators.base import Emulator, Response

HOP_HEADERS = ("authorization", "content-type", "accept")  # what a client of a JSON API needs passed on


class RecordingProxy(Emulator):
    name = "recording-proxy"

    def __init__(self, upstream, timeout=120):
        super().__init__()
        self.upstream = upstream.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()

    def _handle(self, request):
        query = urlencode(request.query, doseq=True)
        url = f"{self.upstream}{request.raw_path}{'?' + query if query else ''}"
        headers = {k: v for k, v in request.headers.items() if k in HOP_HEADERS}
        body = {"json": request.body} if isinstance(request.body, (dict, list)) else {"data": request.body}
        answer = self.session.request(request.method, url, headers=headers, timeout=self.timeout, allow_redirects=False, **body)
        kept = {"Content-Type": answer.headers.get("Content-Type", "application/json")}
        if "Location" in answer.headers:
            kept["Location"] = answer.headers["Location"]
        return Response(answer.status_code, answer.content, kept)
