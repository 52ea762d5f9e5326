"""The DRA driver's node side as the agent runs it: built from the agent's configuration (API server client, the
slice catalog, the claim store under ``<stateDir>/dra``, the driver, the kubelet plugin), started after the restart
check (:meth:`vhostplug.dra.driver.Driver.reconcile`) and stopped with the agent."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from vhostplug import fsutil
from vhostplug.cni.policy import NodePolicy
from vhostplug.dra.catalog import SliceCatalog
from vhostplug.dra.config import DraConfig
from vhostplug.dra.driver import Driver, DriverOptions
from vhostplug.dra.kubeapi import KubeApi
from vhostplug.dra.layout import Layout
from vhostplug.dra.plugin import KubeletPlugin
from vhostplug.dra.store import ClaimStore
from vhostplug.protocols import Dataplane
from vhostplug.vdpa.attach import VdpaPolicy

LOG = logging.getLogger(__name__)
STORE_SUBDIR = "dra"
RECONCILE_RETRY_SECONDS = 2.0


class DraNode:
    def __init__(
        self,
        config: DraConfig,
        dataplane: Dataplane,
        policy: NodePolicy,
        ownership: fsutil.Ownership,
        state_dir: Path,
        vdpa: VdpaPolicy | None = None,
    ) -> None:
        node = config.node  # raises ValueError naming dra.nodeName when unknown
        self.config = config
        self.api = KubeApi(config.api_server)
        layout = Layout(
            socket_root=policy.socket_roots[0],
            container_root=policy.container_socket_roots[0],
            plugin_dir=config.plugin_dir,
            cdi_dir=config.cdi_dir,
            driver=config.driver_name,
        )
        options = DriverOptions(
            driver=config.driver_name,
            node=node,
            layout=layout,
            policy=policy,
            ownership=ownership,
            cdi_version=config.cdi_version,
            vdpa=vdpa,
        )
        catalog = SliceCatalog(self.api, node, config.driver_name)
        self.driver = Driver(dataplane, self.api, catalog, ClaimStore(state_dir / STORE_SUBDIR), options)
        self._stop = threading.Event()
        self._retry: threading.Thread | None = None
        self.plugin = KubeletPlugin(
            self.driver, config.driver_name, config.service_socket, config.registration_socket, config.services
        )

    def _reconcile(self) -> bool:
        try:
            counts = self.driver.reconcile()
        except Exception as exc:  # OVS not up yet: Prepare copes with what a crash left; try again shortly
            LOG.warning("DRA claim store not checked against OVS yet: %s (retrying)", exc)
            return False
        LOG.info(
            "DRA claim store checked against OVS: %(prepared)d prepared, %(rolled_back)d half-prepared rolled back, "
            "%(ports_remade)d ports made again, %(orphans_removed)d orphan ports removed",
            counts,
        )
        return True

    def _retry_reconcile(self) -> None:
        while not self._stop.wait(RECONCILE_RETRY_SECONDS):
            if self._reconcile():
                return

    def start(self) -> None:
        """Check the store against OVS (retried in the background while OVS is unreachable), then serve kubelet."""
        if not self._reconcile():
            self._retry = threading.Thread(target=self._retry_reconcile, name="dra-reconcile", daemon=True)
            self._retry.start()
        self.plugin.start()

    def stop(self) -> None:
        self._stop.set()
        self.plugin.stop()
        if self._retry is not None:
            self._retry.join(timeout=10)
        self.api.close()
