"""A Ray cluster address given by the user, checked before ``ray.init`` is asked to join it.

``ray.init(address=...)`` on an address where nothing listens retries for minutes, printing
"Failed to connect to GCS" warnings; :func:`check_address` fails in about a second instead,
naming the config field (``train.ray.address`` for ``twin-train`` and ``twin-exploit``) in a
:class:`~twin.config.ConfigError`. ``experiments/sweep.py`` has the same check for its
``ray.address``; the shared copy lives here, below both, so that :mod:`agents` never imports
:mod:`experiments`.
"""

from __future__ import annotations

import re
import socket
import sys

from twin.config import ConfigError

#: ``host:port`` with a host name, an IPv4 address or a bracketed IPv6 address
ADDRESS = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")
CLIENT_SCHEME = "ray://"


def ray_running() -> bool:
    """Ray is already initialised in this process (then it is used, and no address is joined)."""
    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


def check_address(address: str, field: str = "train.ray.address", timeout_s: float = 5.0,
                  skip_if_running: bool = True) -> None:  # fmt: skip
    """Fail at once, naming ``field``, when ``address`` is malformed or nothing answers there.

    ``''`` (a local Ray) and ``'auto'`` (the cluster this machine belongs to) are not checked,
    nor is any address while Ray already runs in this process (:func:`agents.train.ray_session`
    then reuses it: a sweep's trial; ``skip_if_running=False`` checks it anyway); ``'host:port'`` (the head node's GCS port) and ``'ray://host:port'`` (Ray Client) must
    accept a TCP connection within ``timeout_s`` seconds.
    """
    if address in ("", "auto") or (skip_if_running and ray_running()):
        return
    hostport = address[len(CLIENT_SCHEME) :] if address.startswith(CLIENT_SCHEME) else address
    m = ADDRESS.match(hostport)
    if not m or not 0 < int(m.group(2)) < 65536:
        raise ConfigError(
            f"{field} = {address!r} is not allowed; allowed values: '' (a local Ray in the "
            "output directory), 'auto' (the cluster this machine belongs to), 'host:port' (the head "
            "node's GCS port, e.g. 10.0.0.5:6379) or 'ray://host:port' (Ray Client)"
        )
    host = m.group(1).strip("[]")
    try:
        with socket.create_connection((host, int(m.group(2))), timeout=timeout_s):
            pass
    except OSError as e:
        raise ConfigError(
            f"{field} = {address!r}: no Ray cluster answers there ({e.strerror or e}); start "
            f"one with `ray start --head --port=<port>` on the head node, or leave {field} "
            "empty for a local Ray"
        ) from None
