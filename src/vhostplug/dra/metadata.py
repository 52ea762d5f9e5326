"""The KEP-5304 device metadata files the driver writes on the host (the format and the container paths are
:mod:`vhostplug.podinfo.devicemetadata`'s, shared with the KubeVirt sidecar that reads them): one file per claim and
request at ``<pluginsDir>/<driver>/dra-device-metadata/<ns>_<claim>/<request>/metadata.json`` (as
k8s.io/dynamic-resource-allocation's kubelet plugin lays them out), 0644 in 0755 folders, bind-mounted read-only
into the container by the claim's CDI device."""

from __future__ import annotations

import os
from pathlib import Path

from vhostplug import fsutil
from vhostplug.dra.layout import ClaimRef
from vhostplug.podinfo import devicemetadata


def document(
    claim: ClaimRef, request: str, driver: str, pool: str, device: str, attributes: dict[str, str | int | bool]
) -> str:
    attrs = {k: devicemetadata.attribute(v) for k, v in sorted(attributes.items())}
    meta = devicemetadata.Metadata(
        namespace=claim.namespace,
        name=claim.name,
        uid=claim.uid,
        generation=1,
        pod_claim_name=claim.pod_claim_name,
        requests={request: [devicemetadata.Device(driver, pool, device, attrs)]},
    )
    return devicemetadata.encode(meta)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    fsutil.write_file_in(path.parent, path.name, text.encode(), mode=0o644)


def remove_claim_dir(claim_dir: Path) -> None:
    """Remove ``<ns>_<claim>/`` with its request folders and files (a real folder only; nothing followed)."""
    try:
        os.lstat(claim_dir)
    except FileNotFoundError:
        return
    if os.path.islink(claim_dir) or not os.path.isdir(claim_dir):
        raise fsutil.UnsafePathError(f"{claim_dir} is not a real folder; leaving it")
    fsutil.remove_dir(claim_dir)
