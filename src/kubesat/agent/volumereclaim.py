"""The node's part of the kubesat.io/local provisioner's Delete: when its Node carries
`delete.volumes.kubesat.io/<pv>` (the server's persistent-volume controller puts it there once a provisioned
volume with reclaimPolicy Delete is released), the agent removes `<root>/volumes/<pv>` and takes the annotation
off. Only a directory of that one name under the agent's own root is touched, and no symlink is followed: one
found in the volume's place is removed itself, never what it points to."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import stat
from pathlib import Path
from typing import Any

from kubesat.agent.claims import VOLUMES_DIR, safe_volume_name
from kubesat.agent.client import ApiClient

log = logging.getLogger("kubesat.agent.volumereclaim")

DELETE_PREFIX = "delete.volumes.kubesat.io/"
MAX_REQUESTS = 1000  # annotations read from one Node at a time
WATCH_SECONDS = 300
RETRY = 2.0


def requested(node: dict[str, Any]) -> list[str]:
    """The volumes the Node asks this agent to remove, by annotation key (bounded)."""
    annotations = (node.get("metadata") or {}).get("annotations") or {}
    if not isinstance(annotations, dict):
        return []
    return sorted(k for k in annotations if isinstance(k, str) and k.startswith(DELETE_PREFIX))[:MAX_REQUESTS]


def remove_volume_dir(root: Path, name: str) -> bool:
    """Remove `<root>/volumes/<name>` without following symlinks; False when there was nothing to remove.
    Raises ValueError for a name that is not one safe path component, OSError when `volumes` is not a plain
    directory (a symlink) or the removal fails."""
    if not safe_volume_name(name):
        raise ValueError(f"{name!r} is not a volume name")
    try:
        base = os.open(root / VOLUMES_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    try:
        try:
            mode = os.stat(name, dir_fd=base, follow_symlinks=False).st_mode
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(mode):
            shutil.rmtree(name, dir_fd=base)  # the fd-based walk: symlinks inside are unlinked, not followed
        else:
            os.unlink(name, dir_fd=base)
        return True
    finally:
        os.close(base)


class VolumeReclaimer:
    """Follows this agent's Node and carries out its volume delete requests."""

    def __init__(self, api: ApiClient, node_name: str, root: Path) -> None:
        self.api, self.node_name, self.root = api, node_name, root

    async def handle(self, node: dict[str, Any]) -> None:
        for key in requested(node):
            name = key[len(DELETE_PREFIX):]
            try:
                if await asyncio.to_thread(remove_volume_dir, self.root, name):
                    log.info("removed the directory of volume %s", name)
            except ValueError as e:
                log.warning("volume delete request %s ignored: %s", key, e)
            except OSError as e:
                log.warning("could not remove the directory of volume %s: %s", name, e)
                continue  # asked again at the Node's next change
            await self.api.patch(f"/api/v1/nodes/{self.node_name}", {"metadata": {"annotations": {key: None}}},
                                 "application/merge-patch+json")

    async def run(self, stop: asyncio.Event) -> None:
        """Read the Node, then watch it, until `stop`; errors are retried."""
        while not stop.is_set():
            try:
                node = await self.api.get(f"/api/v1/nodes/{self.node_name}")
                await self.handle(node)
                params = {"fieldSelector": f"metadata.name={self.node_name}", "timeoutSeconds": str(WATCH_SECONDS),
                          "resourceVersion": str((node.get("metadata") or {}).get("resourceVersion") or "")}
                async for kind, obj in self.api.watch("/api/v1/nodes", params):
                    if stop.is_set():
                        return
                    if kind in ("ADDED", "MODIFIED"):
                        await self.handle(obj)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - the server away or a refusal: try again shortly
                log.warning("volume reclaim: %s (retrying)", e)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RETRY)
