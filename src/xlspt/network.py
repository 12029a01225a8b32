"""Addresses: the one rule for what counts as this machine's loopback interface (the server's warning
and the Ray executor's local-only listening both use it)."""

from __future__ import annotations

import ipaddress


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (``localhost``, an IPv4 or IPv6 address, brackets allowed) is a loopback address."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
