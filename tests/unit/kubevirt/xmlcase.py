"""Helpers shared by the KubeVirt unit tests: a minimal domain, a VMI builder, and virt-xml-validate."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

BASE_DOMAIN = """<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <!-- written by virt-launcher -->
  <name>default_vm1</name>
  <memory unit='MiB'>256</memory>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
  </os>
  <devices>
    <interface type='ethernet'>
      <alias name='ua-default'/>
    </interface>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-s'/>
  </qemu:commandline>
</domain>
"""


def vmi(
    *ifaces: dict[str, Any],
    multiqueue: bool = False,
    transitional: bool = False,
    cpu: dict[str, int] | None = None,
) -> bytes:
    devices: dict[str, Any] = {"interfaces": list(ifaces)}
    if multiqueue:
        devices["networkInterfaceMultiqueue"] = True
    if transitional:
        devices["useVirtioTransitional"] = True
    domain: dict[str, Any] = {"devices": devices}
    if cpu:
        domain["cpu"] = cpu
    networks = [{"name": i["name"], "multus": {"networkName": f"ns/{i['name']}"}} for i in ifaces]
    obj = {"metadata": {"name": "vm1", "namespace": "default"}, "spec": {"domain": domain, "networks": networks}}
    return json.dumps(obj).encode()


def vhu(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "binding": {"name": "vhostuser"}, **extra}


def validate(xml: bytes) -> subprocess.CompletedProcess[str]:
    with tempfile.NamedTemporaryFile(suffix=".xml") as f:
        Path(f.name).write_bytes(xml)
        return subprocess.run(
            ["virt-xml-validate", f.name, "domain"], capture_output=True, text=True, check=False, timeout=30
        )
