"""Keeps this node's ResourceSlices in the API server equal to the devices the node has (:mod:`vhostplug.dra.slices`).

:meth:`SlicePublisher.sync` reads the node's slices of our driver, and when their devices, pool or generation are not
what the node has now, writes the whole pool again with the pool generation bumped past any seen (updating the
slices it has, creating missing ones, then deleting those left over, so a scheduler never sees a half-new pool of one
generation); when nothing changed it writes nothing. The slices name the Node as their owner when the node can be
read (they go with the node). :meth:`SlicePublisher.start` syncs at once and then every ``resyncSeconds`` (or when
:meth:`SlicePublisher.kick` asks) from a thread of its own, through the driver's API client
(:mod:`vhostplug.dra.sliceapi`); a failed sync is logged and retried sooner. Slices are
left in place when the agent stops: a restart publishes the same devices without a change.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from vhostplug.cni.policy import NodePolicy
from vhostplug.deviceplugin.vdpa import VdpaConfig
from vhostplug.dra.config import DraConfig
from vhostplug.dra.slices import API_VERSION, check_config, dns_label, node_devices, slice_specs
from vhostplug.protocols import SliceApi, SliceApiError
from vhostplug.vdpa.discovery import discover

LOG = logging.getLogger(__name__)
JSON = dict[str, Any]
#: a failed sync is tried again after at most this long
RETRY_SECONDS = 5.0


def _devices_of(slices: list[JSON]) -> list[JSON]:
    return sorted((d for s in slices for d in (s.get("spec") or {}).get("devices") or []), key=lambda d: d["name"])


class SlicePublisher:
    def __init__(
        self,
        api: SliceApi,
        node: str,
        driver: str,
        devices: Callable[[], list[JSON]],
        resync_seconds: float = 30.0,
    ) -> None:
        self.api, self.node, self.driver, self.devices = api, node, driver, devices
        self.resync_seconds = resync_seconds
        self.generation = 0
        self.syncs = self.writes = 0
        self._owner: list[JSON] | None = None
        self._kick = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _owners(self) -> list[JSON]:
        if self._owner is None:
            uid = self.api.node_uid(self.node)
            if uid is None:
                LOG.info("DRA: node %s cannot be read: its ResourceSlices name no owner", self.node)
                return []
            self._owner = [{"apiVersion": "v1", "kind": "Node", "name": self.node, "uid": uid, "controller": True}]
        return self._owner

    def sync(self) -> bool:
        """Make the node's slices match its devices; True when it wrote something."""
        wanted = self.devices()
        mine = sorted(
            (s for s in self.api.list_slices(self.node, self.driver) if (s.get("spec") or {}).get("nodeName") == self.node),
            key=lambda s: s["metadata"]["name"],
        )  # fmt: skip
        self.syncs += 1
        pools = [(s.get("spec") or {}).get("pool") or {} for s in mine]
        generations = {int(p.get("generation") or 0) for p in pools}
        specs = slice_specs(self.node, self.driver, wanted, max(generations | {self.generation}))
        current = (
            len(generations) == 1
            and all(p.get("name") == self.node and p.get("resourceSliceCount") == len(mine) for p in pools)
            and len(mine) == len(specs)
            and _devices_of(mine) == sorted(wanted, key=lambda d: d["name"])
        )
        if current or (not mine and not specs):
            self.generation = max(generations | {self.generation})
            return False
        self.generation = max(generations | {self.generation}) + 1
        specs = slice_specs(self.node, self.driver, wanted, self.generation)
        owners = self._owners()
        for i, spec in enumerate(specs):
            if i < len(mine):
                meta = dict(mine[i]["metadata"])
                if owners:
                    meta["ownerReferences"] = owners
                self.api.replace_slice({"apiVersion": API_VERSION, "kind": "ResourceSlice", "metadata": meta, "spec": spec})  # fmt: skip
            else:
                meta = {"generateName": f"{self.node}-{dns_label(self.driver)}-"[:200]}
                if owners:
                    meta["ownerReferences"] = owners
                self.api.create_slice({"apiVersion": API_VERSION, "kind": "ResourceSlice", "metadata": meta, "spec": spec})  # fmt: skip
        for extra in mine[len(specs) :]:
            self.api.delete_slice(extra["metadata"]["name"])
        self.writes += 1
        LOG.info(
            "DRA: published %d device(s) of node %s in %d ResourceSlice(s), pool generation %d",
            len(wanted), self.node, len(specs), self.generation,
        )  # fmt: skip
        return True

    def kick(self) -> None:
        """Sync now (e.g. a vDPA pool changed) rather than at the next resync."""
        self._kick.set()

    def _run(self) -> None:
        failing = False
        while not self._stop.is_set():
            wait = self.resync_seconds
            try:
                self.sync()
            except (SliceApiError, ValueError, OSError) as exc:
                wait = min(wait, RETRY_SECONDS)
                if not failing:
                    LOG.warning("DRA: publishing ResourceSlices failed: %s (retrying)", exc)
                failing = True
            else:
                if failing:
                    LOG.info("DRA: ResourceSlices published again")
                failing = False
            self._kick.wait(wait)
            self._kick.clear()
        self.api.close()  # from this thread: the client keeps one connection per thread

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="dra-slices", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._kick.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None


def from_config(config: DraConfig, policy: NodePolicy, vdpa: VdpaConfig | None, api: SliceApi | None = None) -> SlicePublisher:  # fmt: skip
    """The agent's publisher: the devices of ``policy`` and of the ``vdpa`` pools (re-read at every sync), through
    ``api`` (default: the driver's API client to ``dra.apiServer``). Raises ValueError naming a bad key before anything starts."""
    check_config(policy, config.slices)
    node = config.node

    def devices() -> list[JSON]:
        found = discover(vdpa.sysfs_root, vdpa.dev_root) if vdpa is not None and vdpa.pools else []
        return node_devices(policy, config.slices, found, vdpa.pools if vdpa is not None else ())

    if api is None:
        from vhostplug.dra.kubeapi import KubeApi
        from vhostplug.dra.sliceapi import KubeSliceApi

        api = KubeSliceApi(KubeApi(config.api_server))
    return SlicePublisher(api, node, config.driver_name, devices, config.slices.resync_seconds)
