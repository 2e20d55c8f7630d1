"""A minimal DNS A query over UDP (RFC 1035), to check cluster DNS from the host: a packet to the
kube-dns ClusterIP goes through kube-proxy's rules, the CNI bridge and CoreDNS, so one answer
proves all three work."""

from __future__ import annotations

import socket
import struct


def query_packet(name: str, query_id: int = 0x5146) -> bytes:
    header = struct.pack(">HHHHHH", query_id, 0x0100, 1, 0, 0, 0)  # recursion desired, 1 question
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split("."))
    return header + labels + b"\0" + struct.pack(">HH", 1, 1)  # type A, class IN


def parse_a_records(packet: bytes, query_id: int = 0x5146) -> list[str]:
    """IPv4 addresses in the answer section; [] for NXDOMAIN or no answers."""
    if len(packet) < 12:
        raise ValueError("DNS reply shorter than its header")
    rid, flags, qdcount, ancount = struct.unpack(">HHHH", packet[:8])
    if rid != query_id:
        raise ValueError(f"DNS reply id {rid} does not match the query {query_id}")
    if flags & 0x000F:
        return []
    offset = 12
    for _ in range(qdcount):
        offset = _skip_name(packet, offset) + 4
    addresses = []
    for _ in range(ancount):
        offset = _skip_name(packet, offset)
        rtype, _cls, _ttl, length = struct.unpack(">HHIH", packet[offset : offset + 10])
        offset += 10
        if rtype == 1 and length == 4:
            addresses.append(socket.inet_ntoa(packet[offset : offset + 4]))
        offset += length
    return addresses


def _skip_name(packet: bytes, offset: int) -> int:
    while True:
        length = packet[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:  # compression pointer: two bytes end the name
            return offset + 2
        offset += length + 1


def resolve(server: str, name: str, timeout_s: float = 1.0) -> list[str]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        sock.sendto(query_packet(name), (server, 53))
        reply, _ = sock.recvfrom(4096)
    return parse_a_records(reply)
