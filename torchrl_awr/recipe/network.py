"""A bounded probe of a server a run will talk to (a Ray head node, an MLflow tracking server):
their clients retry an address nobody answers for minutes, or forever."""

from __future__ import annotations

import socket


def connect_error(host: str, port: int, timeout: float) -> OSError | None:
    """Why nothing accepts a TCP connection at ``host:port`` within ``timeout`` seconds (the name
    not resolving, the connection refused or timing out), or None when something does."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as err:
        return err
