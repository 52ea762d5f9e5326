"""The CNI entry of the node agent: one call (ADD, DEL, CHECK, STATUS, GC) in, exit code and stdout out, every
failure answered in the spec's error format.

ADD, CHECK and STATUS are routed by the netconf's ``device`` to that device's verbs (:data:`DEVICES`, each a
:class:`~vhostplug.cni.verbs.DeviceVerbs`): vhost-user (:mod:`vhostplug.cni.vhostuser`) and vDPA
(:mod:`vhostplug.cni.vdpa`). DEL and GC (:mod:`vhostplug.cni.cleanup`) work from what ADD stored, never from the
network config, across agent restarts.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from vhostplug import deadline, fsutil
from vhostplug.cni import netconf
from vhostplug.cni.cleanup import Cleanup, forgiving_env
from vhostplug.cni.records import RecordStore
from vhostplug.cni.spec import (
    IO_FAILURE,
    LATEST,
    TRY_AGAIN_LATER,
    UNSAFE_PATH,
    CniEnv,
    CniError,
    convert_result,
    negotiate,
    require_verb,
)
from vhostplug.cni.vdpa import VdpaVerbs
from vhostplug.cni.verbs import VDPA, VHOST_USER, DeviceVerbs, HandlerOptions, VerbContext, readiness
from vhostplug.cni.vhostuser import VhostUserVerbs
from vhostplug.model import DataplaneHealth
from vhostplug.protocols import Dataplane, DataplaneUnavailable

LOG = logging.getLogger(__name__)

#: netconf ``device`` -> the verbs of that kind of attachment
DEVICES: dict[str, Callable[[VerbContext], DeviceVerbs]] = {VHOST_USER: VhostUserVerbs, VDPA: VdpaVerbs}


class CniHandler:
    def __init__(self, dataplane: Dataplane, options: HandlerOptions | None = None) -> None:
        self.dataplane = dataplane
        self.options = options or HandlerOptions()
        self.records = RecordStore(self.options.state_dir)
        self._lock = threading.Lock()
        self.ctx = VerbContext(
            self.dataplane,
            self.options,
            self.records,
            self._locked,
            forget=lambda *a: self.cleanup.forget(*a),
            undo_add=lambda env, raw: self.cleanup.undo_add(env, raw),
        )
        self.devices = {name: make(self.ctx) for name, make in DEVICES.items()}
        self.cleanup = Cleanup(self.ctx, self.devices)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The handler's lock, waited for at most until the current request's deadline (then code 11: the request
        has done nothing yet, and will not later)."""
        wait = deadline.current().remaining()
        if not self._lock.acquire(timeout=wait if wait < threading.TIMEOUT_MAX else -1):
            raise CniError(
                TRY_AGAIN_LATER,
                "the vhostplug agent is busy with other requests",
                "the switch may be slow or not answering; try again later",
            )
        try:
            yield
        finally:
            self._lock.release()

    # -- entry -------------------------------------------------------------------------------------------------
    def handle(self, env: dict[str, str], raw_conf: dict[str, Any]) -> tuple[int, str]:
        """Run one CNI call on a decoded request (:func:`vhostplug.cni.wire.decode_request` decodes the JSON once);
        return (exit code, stdout) with the spec's error JSON on failure.

        ADD, CHECK and STATUS validate the network configuration strictly. DEL and GC do not: they work from what
        ADD stored (see :mod:`vhostplug.cni.records`), so a config edited or broken since ADD never strands a pod.
        """
        asked = raw_conf.get("cniVersion")
        version = asked if isinstance(asked, str) else LATEST
        try:
            command = env.get("CNI_COMMAND", "")
            result: dict[str, Any] | None = None
            if command == "DEL":
                self.cleanup.delete(forgiving_env(env), raw_conf)
            elif command == "GC":
                self.cleanup.gc(forgiving_env(env), raw_conf)
            else:
                cni_env = CniEnv.from_env(env)
                conf, raw = netconf.parse(raw_conf), raw_conf
                version = negotiate(conf.cni_version, conf.cni_versions)
                require_verb(cni_env.command, version)
                verbs = self.devices[conf.device]
                verb: Callable[[CniEnv, netconf.NetConf, dict[str, Any], str], dict[str, Any] | None] = {
                    "ADD": verbs.add,
                    "CHECK": verbs.check,
                    "STATUS": verbs.status,
                }[cni_env.command]
                result = verb(cni_env, conf, raw, version)
                if result is not None:  # built in the 1.x shape: in the asked version's shape on the way out
                    result = convert_result(result, version)
        except CniError as err:
            return 1, json.dumps(err.to_json(version))
        except DataplaneUnavailable as exc:
            return 1, json.dumps(CniError(TRY_AGAIN_LATER, "the dataplane is unavailable", str(exc)).to_json(version))
        except fsutil.UnsafePathError as exc:  # a path check deep in a step: still the unsafe-path code
            return 1, json.dumps(CniError(UNSAFE_PATH, "refusing an unsafe path", str(exc)).to_json(version))
        except Exception as exc:  # an agent bug must still answer in the spec's format
            LOG.exception("unexpected error")
            return 1, json.dumps(
                CniError(IO_FAILURE, "internal error in the vhostplug agent", repr(exc)).to_json(version)
            )
        return 0, json.dumps(result) if result is not None else ""

    # -- the agent's ticks and probes ----------------------------------------------------------------------------
    def readiness(self) -> DataplaneHealth:
        """Whether ADD can work now (STATUS and the agent's readiness probe)."""
        return readiness(self.ctx)

    def sweep_orphans(self) -> list[str]:
        """Remove the ports of failed ADDs that OVSDB applied after all; return their names."""
        return [name for verbs in self.devices.values() for name in verbs.sweep_orphans()]

    def relocate_client_sockets(self) -> list[str]:
        """Move sockets that the switch re-created (after its restart) back into the pods' folders."""
        with self._locked():
            return self.dataplane.return_client_sockets(self.options.ownership)
