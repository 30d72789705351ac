"""Network namespaces for the bridge pod network (podnet.py), without netlink: the names and checks the rest of
the agent needs at any time, and the namespace steps (create, enter, remove) a thread makes itself with
unshare and setns. Kept apart from podnet so that an agent on the host's network never loads pyroute2."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

NETNS_DIR = Path("/run/netns")
POD_IFNAME = "eth0"
_EINVAL = 22
CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_SHARED = 1 << 20
MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


class PodNetworkError(Exception):
    """A pod network step failed; the message says which."""


class PodNetwork(Protocol):
    """What the agent asks of a pod network (podnet.BridgeNetwork is the one there is): an address and a network
    namespace per pod, and sockets where the pods reach the node's Services."""

    bridge: str
    cidr: ipaddress.IPv4Network
    gateway: str
    nat_error: str | None  # why pods cannot reach beyond the node (None: they can)

    def setup(self) -> None: ...
    def close(self) -> None: ...
    def reserve(self, uid: str) -> str: ...
    def address(self, uid: str) -> str | None: ...
    def attach(self, uid: str) -> str: ...
    def detach(self, uid: str) -> None: ...
    def detach_soon(self, uid: str) -> None: ...
    def listen_socket(self, address: str, port: int) -> socket.socket: ...


def unavailable() -> str | None:
    """None when the bridge pod network can be set up here, else why not, in one line."""
    if not Path("/proc/self/ns/net").exists():
        return "this kernel has no network namespaces"
    if os.geteuid() != 0:
        return "a pod network needs root (bridges, veth pairs and network namespaces)"
    return None


def tag_for(node_name: str, root: Path) -> str:
    """Six hex digits naming one agent's links and namespaces."""
    return hashlib.sha256(f"{node_name}\0{root.absolute()}".encode()).hexdigest()[:6]


# -- network namespaces, in this thread ----------------------------------------------------------------------

def check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


@contextlib.contextmanager
def opened(path: str) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def inside(path: str) -> Iterator[None]:
    """This thread in the network namespace at `path`, and back in its own after."""
    with opened("/proc/thread-self/ns/net") as home, opened(path) as target:
        check(_libc.setns(target, CLONE_NEWNET), f"setns {path}")
        try:
            yield
        finally:
            check(_libc.setns(home, CLONE_NEWNET), "setns back to the node's network")


def _share_netns_dir() -> None:
    """NETNS_DIR a shared mount point of its own, as iproute2 makes it (so a sandbox can detach it whole)."""
    NETNS_DIR.mkdir(parents=True, exist_ok=True)
    target = str(NETNS_DIR).encode()
    if _libc.mount(b"none", target, None, MS_SHARED | MS_REC, None) == 0:
        return
    if ctypes.get_errno() != _EINVAL:
        check(-1, f"mount --make-shared {NETNS_DIR}")
    check(_libc.mount(target, target, b"none", MS_BIND | MS_REC, None), f"mount --bind {NETNS_DIR}")
    check(_libc.mount(b"none", target, None, MS_SHARED | MS_REC, None), f"mount --make-shared {NETNS_DIR}")


def create_netns(path: str) -> None:
    """A new network namespace kept at `path` (a bind mount of it), made by this thread, which stays in its own."""
    _share_netns_dir()
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0))
    try:
        with opened("/proc/thread-self/ns/net") as home:
            check(_libc.unshare(CLONE_NEWNET), "unshare")
            try:
                check(_libc.mount(b"/proc/thread-self/ns/net", path.encode(), b"none", MS_BIND, None),
                       f"mount {path}")
            finally:
                check(_libc.setns(home, CLONE_NEWNET), "setns back to the node's network")
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


def remove_netns(path: str) -> None:
    if os.path.lexists(path):
        _libc.umount2(path.encode(), MNT_DETACH)
        with contextlib.suppress(OSError):
            os.unlink(path)
