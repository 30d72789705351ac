"""Open the server's listening sockets; a port that cannot be had is one line that says why (and who has it)."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

_PROC = Path("/proc")
_TCP_LISTEN = "0A"  # the state column of /proc/net/tcp for a listening socket


class ListenError(Exception):
    """Why the server cannot listen, worded for the person who ran it."""


def listen_sockets(host: str, port: int) -> list[socket.socket]:
    """Bound (not yet listening) TCP sockets for every address `host` names, as the event loop would bind them."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ListenError(f"cannot listen on {host}: {e.strerror}") from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, addr in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            _bind(sock, addr, host, port)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


# A socket address as getaddrinfo gives it: (host, port) for IPv4, (host, port, flowinfo, scope_id) for IPv6
# (and, in the typeshed union, the (id, bytes) form of raw sockets).
SockAddr = tuple[str, int] | tuple[str, int, int, int] | tuple[int, bytes]


def _bind(sock: socket.socket, addr: SockAddr, host: str, port: int) -> None:
    try:
        sock.bind(addr)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            pid = pid_listening_on(port)
            who = f" (by pid {pid})" if pid else ""
            raise ListenError(f"port {port} on {host} is in use{who}; choose another with --port") from None
        raise ListenError(f"cannot listen on {host} port {port}: {e.strerror}") from None


def pid_listening_on(port: int) -> int | None:
    """The process with a socket listening on `port` (any address), if /proc shows one we may look at."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for proc in _PROC.iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in os.scandir(proc / "fd"):
                if os.readlink(fd.path) in targets:
                    return int(proc.name)
        except OSError:  # another user's process, or one that just exited
            continue
    return None


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (_PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] == _TCP_LISTEN and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(cols[9])
    return inodes
