"""Loopback-only networking for the local services: free ports, port and HTTP probes.

Every service binds 127.0.0.1 only, and probes refuse any other address, so nothing started here
is reachable from outside this machine.
"""

from __future__ import annotations

import socket
import urllib.request

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def port_accepts(port: int) -> bool:
    """Whether something accepts TCP connections on the loopback port."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1.0):
            return True
    except OSError:
        return False


def http_get(url: str, timeout_s: float = 3.0) -> tuple[int, str]:
    """Status and body of a plain-HTTP GET to a loopback URL."""
    if not url.startswith(f"http://{LOOPBACK}:"):
        raise ValueError(f"refusing to probe a non-loopback URL: {url}")
    with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - loopback http only
        status: int = response.status
        return status, response.read().decode("utf-8", errors="replace")
