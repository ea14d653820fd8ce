"""Whether the service can listen on its address, checked just before uvicorn binds it, so that a
port in use or an address this machine cannot bind ends the start-up with one clear line and its
own exit status (uvicorn alone logs the bare OS error and exits 3 for all of them).

The check binds every address uvicorn's single-process server binds (all that the host resolves
to, IPv6 sockets v6-only, `SO_REUSEADDR` as uvicorn sets it) and releases them at once.
"""

from __future__ import annotations

import errno
import socket

EXIT_PORT_IN_USE = 3
EXIT_CANNOT_BIND = 4


class ListenError(Exception):
    """The service cannot listen on the address; `exit_status` is the CLI's status for it."""

    def __init__(self, message: str, exit_status: int) -> None:
        super().__init__(message)
        self.exit_status = exit_status


def check_can_listen(host: str, port: int) -> None:
    """Raise ListenError unless (host, port) can be bound now."""
    where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise ListenError(
            f"cannot listen on {where}: the host {host!r} is not an address this machine can "
            f"resolve ({error.strerror}); set --host or MMOE_HOST to one of its addresses, e.g. "
            "127.0.0.1, or 0.0.0.0 for every interface",
            EXIT_CANNOT_BIND,
        ) from None
    for family, kind, protocol, _, address in addresses:
        try:
            probe = socket.socket(family, kind, protocol)
        except OSError:
            continue  # an address family this host lacks (IPv6 off): asyncio skips it too
        with probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as error:
                raise _explain(error, where, port) from None


def _explain(error: OSError, where: str, port: int) -> ListenError:
    if error.errno == errno.EADDRINUSE:
        return ListenError(
            f"cannot listen on {where}: port {port} is already in use by another process; stop "
            "that process, or choose another port with --port or MMOE_PORT",
            EXIT_PORT_IN_USE,
        )
    if error.errno == errno.EACCES:
        reason = "permission denied (ports below 1024 need privileges); choose a port >= 1024"
    elif error.errno == errno.EADDRNOTAVAIL:
        reason = (
            "the address is not one of this machine's; set --host or MMOE_HOST to one of its "
            "addresses, e.g. 127.0.0.1, or 0.0.0.0 for every interface"
        )
    else:
        reason = f"{error.strerror}; check --host/MMOE_HOST and --port/MMOE_PORT"
    return ListenError(f"cannot listen on {where}: {reason}", EXIT_CANNOT_BIND)
