"""The bridge pod network (`kubesat agent --pod-network bridge`, root only): each pod its own network namespace
with an address of the node's podCIDR, all through netlink (pyroute2), no `ip` commands.

The agent makes a Linux bridge, `ks` and six hex digits of a hash of its node name and root (so two agents on one
machine do not collide), holding the podCIDR's first address: the pods' gateway. Each pod gets a network namespace
(/run/netns/kubesat-TAG-PODUID, where `ip netns` finds it) with `lo` up and one end of a veth pair as `eth0`,
with the next free address of the podCIDR and a default route through the gateway; the other end (`ksTAG-XXXXXX`)
is on the bridge. Every container of the pod joins that namespace (the sandbox's `netns`). Detaching a pod
deletes its veth and namespace and frees its address; `setup` removes what a crashed agent left (its veths,
namespaces and bridge), `close` removes everything. Namespaces are made and entered by the calling thread itself
(unshare, setns), never by a forked child as pyroute2's own netns helpers do: a fork of the agent would share its
event loop's signal wake-up descriptor, and the child's end would stop the agent.

Services: a Service's ClusterIP is added to the bridge (/32) and the service proxy listens there on a socket
bound to the bridge (SO_BINDTODEVICE), so that two agents on one machine each serve the same ClusterIP to their
own pods.

Beyond the node: the agent turns on IPv4 forwarding and adds an nftables table of its own (`kubesat-TAG`, through
netlink) that masquerades what the pods send outside the podCIDR, as the CNI bridge plugin's ipMasq does; a
kernel without nf_tables leaves the pods reaching only the node (`nat_error` says why). Before making the bridge,
`setup` refuses a podCIDR that a route of this machine already covers (another agent's bridge, a CNI, a VPN):
two bridges with one subnet would each lose half the replies.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import ipaddress
import socket
import threading

from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.nfnetlink.nftsocket import Cmp
from pyroute2.nftables.expressions import ipv4addr, masq
from pyroute2.nftables.main import NFTables

from kubesat.agent.netns import (
    NETNS_DIR, POD_IFNAME, PodNetworkError, create_netns, inside, opened, remove_netns,
)

IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
_NFPROTO_IPV4 = 2
_NF_ACCEPT = 1
_NAT_PRIORITY = 100  # srcnat, where masquerading goes


def overlapping_route(cidr: ipaddress.IPv4Network, routes: list[tuple[str, str]]) -> str | None:
    """The first of `routes` ((destination CIDR, link name) of this machine, default routes left out) whose
    destination overlaps `cidr`, as "DEST on LINK"; None when the podCIDR is free here."""
    for dest, link in routes:
        net = ipaddress.ip_network(dest, strict=False)
        if net.prefixlen > 0 and net.version == 4 and net.overlaps(cidr):
            return f"{dest} on {link}"
    return None


class BridgeNetwork:
    """See the module's docstring. Its methods block briefly (netlink) and each takes the lock; those that speak
    netlink must not run on a thread with a running event loop (pyroute2 runs one of its own there)."""

    def __init__(self, tag: str, cidr: str) -> None:
        try:
            self.cidr = ipaddress.IPv4Network(cidr, strict=False)
        except ValueError as e:
            raise PodNetworkError(f"podCIDR {cidr!r} is not an IPv4 CIDR: {e}") from None
        if self.cidr.num_addresses < 8:
            raise PodNetworkError(f"podCIDR {cidr} is too small (at least a /29)")
        self.tag = tag
        self.bridge = f"ks{tag}"
        hosts = self.cidr.hosts()
        self.gateway = str(next(hosts))
        self._free = [str(a) for a in hosts]
        self._addresses: dict[str, str] = {}  # pod uid -> address
        self._attached: set[str] = set()
        self._service_ips: set[str] = set()
        self._lock = threading.Lock()
        self.table = f"kubesat-{tag}"
        self.nat_error: str | None = None  # why pods cannot reach beyond the node (None: they can)

    # ------------------------------------------------------------------ the bridge
    def setup(self) -> None:
        """Remove what an earlier run left, then make the bridge with the gateway address, up."""
        with self._lock, IPRoute() as ipr:
            self._remove_leftovers(ipr)
            taken = overlapping_route(self.cidr, _routes(ipr))
            if taken is not None:
                raise PodNetworkError(f"podCIDR {self.cidr} overlaps the route to {taken} already on this machine")
            ipr.link("add", ifname=self.bridge, kind="bridge")
            index = self._index(ipr, self.bridge)
            ipr.addr("add", index=index, address=self.gateway, prefixlen=self.cidr.prefixlen)
            ipr.link("set", index=index, state="up")
        self.nat_error = self._masquerade()

    def _masquerade(self) -> str | None:
        """Forwarding on, and the pods' traffic leaving the podCIDR masqueraded; why not, when it cannot be."""
        try:
            if IP_FORWARD.read_text().strip() != "1":
                IP_FORWARD.write_text("1\n")
            with NFTables(nfgen_family=_NFPROTO_IPV4) as nft:
                nft.table("add", name=self.table)
                nft.chain("add", table=self.table, name="postrouting", hook="postrouting", type="nat",
                          policy=_NF_ACCEPT, priority=_NAT_PRIORITY)
                nft.rule("add", table=self.table, chain="postrouting", expressions=(
                    ipv4addr(src=str(self.cidr)), ipv4addr(dst=str(self.cidr), op=Cmp.NFT_CMP_NEQ), masq()))
        except (OSError, NetlinkError) as e:
            self._remove_table()
            return f"cannot masquerade the pods' traffic beyond the node (IP forwarding and nf_tables): {e}"
        return None

    def _remove_table(self) -> None:
        with contextlib.suppress(OSError, NetlinkError), NFTables(nfgen_family=_NFPROTO_IPV4) as nft:
            if any(t.get_attr("NFTA_TABLE_NAME") == self.table for t in nft.get_tables()):
                nft.table("del", name=self.table)

    def close(self) -> None:
        """Every pod's veth and namespace, then the bridge (with the Service addresses on it)."""
        with self._lock, IPRoute() as ipr:
            self._remove_leftovers(ipr)
            self._addresses.clear()
            self._attached.clear()
            self._service_ips.clear()

    def _remove_leftovers(self, ipr: IPRoute) -> None:
        for link in ipr.get_links():
            name = str(link.get_attr("IFLA_IFNAME") or "")
            if name.startswith(f"ks{self.tag}-"):
                _delete_link(ipr, int(link["index"]))
        with contextlib.suppress(OSError):
            for entry in NETNS_DIR.iterdir():
                if entry.name.startswith(f"kubesat-{self.tag}-"):
                    remove_netns(str(entry))
        for index in ipr.link_lookup(ifname=self.bridge):
            _delete_link(ipr, int(index))
        self._remove_table()

    # ------------------------------------------------------------------ pods
    def reserve(self, uid: str) -> str:
        """The pod's address: the next free one of the podCIDR, kept until `detach` (the same for later calls)."""
        with self._lock:
            if uid not in self._addresses:
                if not self._free:
                    raise PodNetworkError(f"no free address left in podCIDR {self.cidr}")
                self._addresses[uid] = self._free.pop(0)
            return self._addresses[uid]

    def address(self, uid: str) -> str | None:
        return self._addresses.get(uid)

    def netns_path(self, uid: str) -> str:
        return str(NETNS_DIR / f"kubesat-{self.tag}-{uid}")

    def attach(self, uid: str) -> str:
        """The pod's namespace with its veth, address and route (made once); its path, for the sandbox."""
        address = self.reserve(uid)
        path = self.netns_path(uid)
        with self._lock:
            if uid in self._attached:
                return path
            host_end, pod_end = self._veth_names(uid)
            try:
                create_netns(path)
                with IPRoute() as ipr, opened(path) as ns_fd:
                    ipr.link("add", ifname=host_end, kind="veth", peer={"ifname": pod_end})
                    ipr.link("set", index=self._index(ipr, host_end), master=self._index(ipr, self.bridge),
                             state="up")
                    ipr.link("set", index=self._index(ipr, pod_end), net_ns_fd=ns_fd)
                with inside(path):
                    self._configure_inside(pod_end, address)
            except (OSError, NetlinkError, PodNetworkError) as e:
                self._remove_pod(uid)
                raise PodNetworkError(f"could not give the pod its network: {e}") from None
            self._attached.add(uid)
        return path

    def _configure_inside(self, pod_end: str, address: str) -> None:
        """In the pod's namespace (this thread's): lo up, eth0 with the address, the default route."""
        with IPRoute() as ipr:
            ipr.link("set", index=self._index(ipr, "lo"), state="up")
            index = self._index(ipr, pod_end)
            ipr.link("set", index=index, ifname=POD_IFNAME)
            ipr.addr("add", index=index, address=address, prefixlen=self.cidr.prefixlen)
            ipr.link("set", index=index, state="up")
            ipr.route("add", dst="0.0.0.0/0", gateway=self.gateway)

    def detach(self, uid: str) -> None:
        """The pod is gone: its veth and namespace removed, its address free again."""
        with self._lock:
            self._remove_pod(uid)
            address = self._addresses.pop(uid, None)
            if address is not None:
                self._free.append(address)

    def detach_soon(self, uid: str) -> None:
        """`detach` from a thread of its own: for callers on the event loop, where pyroute2's blocking calls
        cannot run (they drive an event loop of their own)."""
        if uid in self._addresses or uid in self._attached:
            threading.Thread(target=self.detach, args=(uid,), name=f"podnet-detach-{uid}", daemon=True).start()

    def _remove_pod(self, uid: str) -> None:
        self._attached.discard(uid)
        host_end, _pod_end = self._veth_names(uid)
        with IPRoute() as ipr:
            for index in ipr.link_lookup(ifname=host_end):
                _delete_link(ipr, int(index))
        remove_netns(self.netns_path(uid))

    def _veth_names(self, uid: str) -> tuple[str, str]:
        digest = hashlib.sha256(uid.encode()).hexdigest()[:6]
        return f"ks{self.tag}-{digest}", f"ks{self.tag}p{digest}"

    # ------------------------------------------------------------------ Services
    def listen_socket(self, address: str, port: int) -> socket.socket:
        """A TCP socket listening on `address:port` for this bridge's pods only (the address added to the bridge
        first); OSError when it cannot be bound."""
        self._add_service_address(address)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.bridge.encode())
            sock.bind((address, port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    def _add_service_address(self, address: str) -> None:
        with self._lock:
            if address in self._service_ips or address == self.gateway:
                return
            with IPRoute() as ipr:
                try:
                    ipr.addr("add", index=self._index(ipr, self.bridge), address=address, prefixlen=32)
                except NetlinkError as e:
                    if e.code != errno.EEXIST:
                        raise OSError(e.code, f"cannot add {address} to {self.bridge}: {e}") from None
            self._service_ips.add(address)

    @staticmethod
    def _index(ipr: IPRoute, name: str) -> int:
        found = ipr.link_lookup(ifname=name)
        if not found:
            raise PodNetworkError(f"no link {name}")
        return int(found[0])


def _routes(ipr: IPRoute) -> list[tuple[str, str]]:
    """This machine's IPv4 routes of the main table as (destination CIDR, link name)."""
    names = {int(link["index"]): str(link.get_attr("IFLA_IFNAME")) for link in ipr.get_links()}
    out = []
    for route in ipr.get_routes(family=socket.AF_INET, table=254):
        dest = route.get_attr("RTA_DST")
        if dest:
            out.append((f"{dest}/{route['dst_len']}", names.get(int(route.get_attr("RTA_OIF") or 0), "?")))
    return out


def _delete_link(ipr: IPRoute, index: int) -> None:
    """Delete a link (with its veth peer); one already gone is no error."""
    try:
        ipr.link("del", index=index)
    except NetlinkError as e:
        if e.code not in (errno.ENODEV, errno.ENOENT):
            raise


