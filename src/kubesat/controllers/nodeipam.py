"""Node podCIDRs, as kube-controller-manager's node IPAM controller gives them with `--allocate-node-cidrs`
(its RangeAllocator over a cidrset): a Node without `spec.podCIDR` gets the next free subnet of the cluster CIDR
(`--node-cidr-mask-size` bits, /24 by default) in `spec.podCIDR` and `spec.podCIDRs`, once (the API server
refuses to change it afterwards). The search for a free one goes on from after the last one given, wrapping
around, as the cidrset's does, so a released subnet is given again once the ones after it are taken. At start
(and after lost watch history) the subnets of the existing Nodes and the part of the service range inside the
cluster CIDR are marked used; a deleted Node's subnet is free again. With none left the Node gets the
Event `CIDRNotAvailable` ("Node NAME status is now: CIDRNotAvailable", from `cidrAllocator`) and no podCIDR, and
is tried again when a subnet is freed.

Unlike kube-controller-manager, which stops when a Node holds a podCIDR it cannot parse or one outside the
cluster CIDR, such a Node is logged once and left as it is: it marks nothing used.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from kubesat import errors
from kubesat.controllers.base import Key, QueuedController, loads, resource_of_key, split_key
from kubesat.controllers.events import EventRecorder
from kubesat.registry.kinds import builtin_kind
from kubesat.registry.service import SERVICE_CIDR
from kubesat.registry.store import Registry
from kubesat.storage.interface import WatchEvent

log = logging.getLogger("kubesat.controllers.nodeipam")

NODES = builtin_kind("v1", "Node")
COMPONENT = "cidrAllocator"
DEFAULT_CLUSTER_CIDR = "10.244.0.0/16"
DEFAULT_MASK_V4 = 24
DEFAULT_MASK_V6 = 64
# The cidrset keeps one bit per subnet; for IPv6 it allows at most 2^16 of them, as Kubernetes' does.
MAX_V6_MASK_DIFF = 16

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class CIDRError(ValueError):
    """A CIDR the allocator cannot take: unparsable, of the other family, or outside the cluster CIDR."""


class Exhausted(Exception):
    """No free subnet left in the cluster CIDR."""


def parse_cidr(text: str) -> Network:
    """A CIDR as Go's ParseCIDR reads it: host bits are allowed and dropped ("10.244.1.5/16" is 10.244.0.0/16)."""
    if "/" not in text:
        raise CIDRError(f"invalid CIDR address: {text}")
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise CIDRError(f"invalid CIDR address: {text}") from None


def check_options(cluster_cidr: str, mask_size: int | None) -> tuple[Network, int]:
    """The cluster CIDR and node mask size of `--cluster-cidr` and `--node-cidr-mask-size` (None: 24 for IPv4,
    64 for IPv6), or a CIDRError worded for the person who gave them."""
    if "," in cluster_cidr:
        raise CIDRError(f"--cluster-cidr {cluster_cidr!r}: one CIDR only (dual-stack is not supported)")
    if not cluster_cidr.strip():
        raise CIDRError("--allocate-node-cidrs is on but --cluster-cidr is empty")
    try:
        cluster = parse_cidr(cluster_cidr)
    except CIDRError as e:
        raise CIDRError(f"--cluster-cidr: {e}") from None
    bits = cluster.max_prefixlen
    mask = mask_size if mask_size is not None else (DEFAULT_MASK_V4 if cluster.version == 4 else DEFAULT_MASK_V6)
    if not cluster.prefixlen <= mask <= bits:
        raise CIDRError(f"--node-cidr-mask-size {mask}: must be between the prefix of --cluster-cidr {cluster} "
                        f"({cluster.prefixlen}) and {bits}")
    if cluster.version == 6 and mask - cluster.prefixlen > MAX_V6_MASK_DIFF:
        raise CIDRError(f"--node-cidr-mask-size {mask}: at most {MAX_V6_MASK_DIFF} bits more than the prefix of "
                        f"the IPv6 --cluster-cidr {cluster} ({cluster.prefixlen})")
    return cluster, mask


class CidrSet:
    """The subnets of `mask_size` bits of a cluster CIDR, each used or free (one bit each)."""

    def __init__(self, cluster: Network, mask_size: int) -> None:
        if not cluster.prefixlen <= mask_size <= cluster.max_prefixlen:
            raise CIDRError(f"node mask size {mask_size} does not fit cluster CIDR {cluster}")
        self.cluster = cluster
        self.mask_size = mask_size
        self.size = 1 << (mask_size - cluster.prefixlen)
        self._shift = cluster.max_prefixlen - mask_size
        self._used = 0  # bit i: subnet i is used
        self._next = 0  # where the search for a free subnet starts

    def subnet(self, index: int) -> Network:
        base = int(self.cluster.network_address) | (index << self._shift)
        return ipaddress.ip_network((base, self.mask_size))

    def used(self) -> int:
        return self._used.bit_count()

    def is_used(self, net: Network) -> bool:
        begin, end = self._range(net)
        span = ((1 << (end - begin + 1)) - 1) << begin
        return self._used & span == span

    def allocate_next(self) -> Network:
        """The first free subnet from the one after the last given, wrapping around; marked used."""
        full = (1 << self.size) - 1
        free = ~self._used & full
        if not free:
            raise Exhausted("CIDR allocation failed; there are no remaining CIDRs left to allocate in the "
                            "accepted range")
        after = free >> self._next  # the free ones from the next candidate on; else wrap around to the first
        index = self._next + (after & -after).bit_length() - 1 if after else (free & -free).bit_length() - 1
        self._used |= 1 << index
        self._next = (index + 1) % self.size
        return self.subnet(index)

    def occupy(self, net: Network) -> None:
        """Mark every subnet `net` overlaps used (all of them for a CIDR that holds the cluster CIDR)."""
        begin, end = self._range(net)
        self._used |= ((1 << (end - begin + 1)) - 1) << begin

    def release(self, net: Network) -> None:
        begin, end = self._range(net)
        self._used &= ~(((1 << (end - begin + 1)) - 1) << begin)

    def _range(self, net: Network) -> tuple[int, int]:
        """The first and last index of the subnets `net` overlaps."""
        if net.version != self.cluster.version or not net.overlaps(self.cluster):
            raise CIDRError(f"cidr {net} is out the range of cluster cidr {self.cluster}")
        if net.prefixlen <= self.cluster.prefixlen:
            return 0, self.size - 1
        base = int(self.cluster.network_address)
        return ((int(net.network_address) - base) >> self._shift,
                (int(net.broadcast_address) - base) >> self._shift)


def node_pod_cidrs(node: dict[str, Any]) -> list[str]:
    """spec.podCIDRs (or the singular alone), as strings; [] when there are none or the spec is not an object."""
    spec = node.get("spec")
    if not isinstance(spec, dict):
        return []
    many = spec.get("podCIDRs")
    if isinstance(many, list) and many:
        return [str(c) for c in many]
    one = spec.get("podCIDR")
    return [str(one)] if one else []


class NodeIpamController(QueuedController):
    name = "node-ipam"

    def __init__(self, registry: Registry, cluster: Network, mask_size: int,
                 service_cidr: Network | None = SERVICE_CIDR) -> None:
        super().__init__(registry)
        self.cluster = cluster
        self.mask_size = mask_size
        self.service_cidr = service_cidr
        self.cidrs = CidrSet(cluster, mask_size)
        self.events = EventRecorder(registry, COMPONENT)
        self.held: dict[str, Network] = {}  # node name -> the subnet(s) it marks used
        self._waiting: set[str] = set()  # nodes that found the range exhausted
        self._warned: set[tuple[str, str]] = set()

    # --- the used subnets ---------------------------------------------------------------
    async def _resync(self) -> int:
        rev = await self.registry.revision()
        self.cidrs = CidrSet(self.cluster, self.mask_size)
        self.held.clear()
        if self.service_cidr is not None and self.service_cidr.version == self.cluster.version \
                and self.service_cidr.overlaps(self.cluster):
            self.cidrs.occupy(self.service_cidr)
        for node in (await self.registry.list(NODES, "")).items:
            if not self._note(node):
                self.queue.add(("", node["metadata"]["name"]))
        return rev

    def _note(self, node: dict[str, Any]) -> bool:
        """Mark the subnet of a node that has a podCIDR used; False when it has none."""
        name = str(node["metadata"]["name"])
        cidrs = node_pod_cidrs(node)
        if not cidrs:
            return False
        self._waiting.discard(name)
        if name in self.held:
            return True
        for text in cidrs:
            try:
                net = parse_cidr(text)
                if net.version != self.cluster.version:
                    continue
                self.cidrs.occupy(net)
            except CIDRError as e:
                self._warn_once(name, text, f"node-ipam: node {name}'s podCIDR {text!r} marks nothing used: {e}")
                break
            self.held[name] = net
            break
        return True

    def _warn_once(self, node: str, cidr: str, message: str) -> None:
        if (node, cidr) not in self._warned:
            self._warned.add((node, cidr))
            log.warning("%s", message)

    def _release(self, name: str) -> None:
        net = self.held.pop(name, None)
        if net is None:
            return
        self.cidrs.release(net)
        # What another node (or the service range) also holds stays used.
        for other in self.held.values():
            if other.overlaps(net):
                self.cidrs.occupy(other)
        if self.service_cidr is not None and self.service_cidr.version == net.version \
                and self.service_cidr.overlaps(net):
            self.cidrs.occupy(self.service_cidr)
        for waiting in sorted(self._waiting):
            self.queue.add(("", waiting))

    # --- events and syncs ---------------------------------------------------------------
    async def _on_event(self, ev: WatchEvent) -> None:
        if resource_of_key(ev.key) is not NODES:
            return
        _, name = split_key(NODES, ev.key)
        if ev.type == "DELETE":
            self._waiting.discard(name)
            self._release(name)
            return
        node = loads(ev.value)
        if node is not None and not self._note(node):
            self.queue.add(("", name))

    async def _sync_key(self, key: Key) -> None:
        name = key[1]
        node = await self.registry.get_or_none(NODES, "", name)
        if node is None or self._note(node) or (node.get("metadata") or {}).get("deletionTimestamp"):
            return
        try:
            net = self.cidrs.allocate_next()
        except Exhausted as e:
            self._waiting.add(name)
            log.warning("node-ipam: no podCIDR for node %s: %s", name, e)
            ref = {"kind": "Node", "apiVersion": "v1", "name": name, "uid": node["metadata"].get("uid", "")}
            await self.events.event(ref, "Normal", "CIDRNotAvailable", f"Node {name} status is now: CIDRNotAvailable")
            return
        await self._assign(name, net)

    async def _assign(self, name: str, net: Network) -> None:
        """Write `net` as the node's podCIDR unless it has one by now (then `net` is free again)."""
        text = str(net)

        def mutate(current: dict[str, Any]) -> dict[str, Any]:
            if node_pod_cidrs(current):
                raise _HasCIDR
            spec = current.get("spec")
            if not isinstance(spec, dict):
                spec = current["spec"] = {}
            spec["podCIDR"] = text
            spec["podCIDRs"] = [text]
            return current

        try:
            await self.registry.guaranteed_update(NODES, "", name, mutate)
        except _HasCIDR:
            self.cidrs.release(net)
            self._restore(net)
            return
        except errors.StatusError as e:
            self.cidrs.release(net)
            self._restore(net)
            if e.code == 404:
                return
            raise
        self.held[name] = net
        log.info("node-ipam: node %s: podCIDR %s", name, text)

    def _restore(self, net: Network) -> None:
        for other in self.held.values():
            if other.overlaps(net):
                self.cidrs.occupy(other)


class _HasCIDR(Exception):
    """The node got a podCIDR between the read and the write."""
