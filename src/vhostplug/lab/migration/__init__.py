"""Lab live migration on one host: two raw QEMUs (source and target "virt-launcher pods") behind OVS-DPDK.

libvirt refuses to migrate a domain to the same host, so this drives ``qemu-system-x86_64`` directly (TCG, q35,
shared memfd guest memory, ``vectors=0`` on the vhost-user virtio-net: see DESIGN.md) and migrates over QMP.

One module per job: :mod:`.qmp` (a minimal QMP client), :mod:`.qemu` (one QEMU in its own mount namespace),
:mod:`.pings` (host-timestamped guest ping replies read from the serial logs), :mod:`.counters` (live OpenFlow port
counters) and :mod:`.scenario` (:func:`~.scenario.migrate` and :class:`~.scenario.MigrationLab`, the whole scenario,
shared by the functional test and ``bench/migration_downtime.py``). Their one error is :class:`MigrationError`.
"""

from __future__ import annotations

from vhostplug.lab.vms import LabVmError


class MigrationError(LabVmError):
    """A QMP command failed or the migration did not complete; the message says which and why."""
