"""What rewardkit's two web servers (`rewardkit serve` and `rewardkit label serve`) share."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only (so a server on it needs no token to be safe)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
