"""A stand-in for Consul's DNS interface (UDP on 127.0.0.1), reduced to what Caddy asks of it.

As Consul answers (``agent/dns.go``): ``<service>.service.consul`` A -> the instances' addresses, SRV ->
``<node>.node.dc1.consul`` targets with the instances' ports; ``<node>.node.dc1.consul`` A -> the node's
address. Every address here is 127.0.0.1. Unknown names: NXDOMAIN; a known name without that record type:
an empty answer (NODATA), as Consul answers the AAAA query Go sends next to A.
"""

import socket
import threading

SRV, A = 33, 1
LOOPBACK_A = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x00\x00\x04\x7f\x00\x00\x01"  # name -> 127.0.0.1, TTL 0


def _name(text):
    return b"".join(bytes([len(part)]) + part.encode() for part in text.split(".") if part) + b"\x00"


class ConsulDns:
    """``ConsulDns({"app": ("node-1", 8080)})``; a list of names for A records only (no SRV port)."""

    def __init__(self, services):
        self.services = dict(services) if isinstance(services, dict) else {name: (name, None) for name in services}
        self.nodes = {f"{node}.node.dc1.consul" for node, _ in self.services.values()}
        self.queries = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self.serve, daemon=True).start()

    def answer(self, name, qtype):
        """(known, answer record bytes) for one question."""
        service = name[: -len(".service.consul")] if name.endswith(".service.consul") else None
        if service in self.services:
            node, port = self.services[service]
            if qtype == A:
                return True, LOOPBACK_A
            if qtype != SRV or port is None:
                return True, b""
            rdata = b"\x00\x01\x00\x01" + port.to_bytes(2, "big") + _name(f"{node}.node.dc1.consul")
            return True, b"\xc0\x0c" + SRV.to_bytes(2, "big") + b"\x00\x01\x00\x00\x00\x00" + len(rdata).to_bytes(2, "big") + rdata
        if name in self.nodes:
            return True, LOOPBACK_A if qtype == A else b""
        return False, b""

    def serve(self):
        while True:
            try:
                packet, peer = self.sock.recvfrom(1024)
            except OSError:
                return
            labels, i = [], 12
            while packet[i]:
                labels.append(packet[i + 1 : i + 1 + packet[i]].decode().lower())
                i += 1 + packet[i]
            qtype = int.from_bytes(packet[i + 1 : i + 3], "big")
            name = ".".join(labels)
            self.queries.append((name, qtype))
            known, answer = self.answer(name, qtype)
            flags = b"\x85\x80" if known else b"\x85\x83"  # authoritative answer / NXDOMAIN
            header = packet[:2] + flags + b"\x00\x01" + (b"\x00\x01" if answer else b"\x00\x00") + b"\x00\x00\x00\x00"
            self.sock.sendto(header + packet[12 : i + 5] + answer, peer)

    def stop(self):
        self.sock.close()
