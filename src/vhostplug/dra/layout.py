"""Where everything a prepared claim makes lives, derived from the claim alone (so Unprepare and a restarted agent
find it again): the host socket folder, the stable container path, the KEP-5304 metadata file on the host and in
the container, the CDI spec file and its device IDs.

- host socket folder: ``<socketRoot>/dra-<16 hex of sha256(claimUID/request)>`` (short: OVS needs the socket path
  within 107 bytes; ``dra-`` keeps it apart from the device plugin's slot folders);
- container folder: ``<containerSocketRoot>/dra/resourceclaimtemplates/<podClaimName>/<request>`` for a claim made
  from a template (its ``resource.kubernetes.io/pod-claim-name`` annotation), else
  ``<containerSocketRoot>/dra/resourceclaims/<claimName>/<request>``: the same in every pod made from the same spec,
  so a migration's target virt-launcher sees the socket where the source's did;
- metadata (KEP-5304, as k8s.io/dynamic-resource-allocation's kubelet plugin writes it): host
  ``<pluginsDir>/<driver>/dra-device-metadata/<ns>_<claim>/<request>/metadata.json``, container
  ``/var/run/kubernetes.io/dra-device-attributes/{resourceclaims/<claim>|resourceclaimtemplates/<podClaimName>}/
  <request>/<driver>-metadata.json``;
- CDI: one spec file per claim and kind, ``<cdiDir>/<driver>_<kind>_<claimUID>.json``; one CDI device per request,
  named ``<claimUID>-<request>``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from vhostplug import deviceinfo
from vhostplug.podinfo import devicemetadata

#: the annotation kube-controller-manager puts on a claim it made from a pod's ResourceClaimTemplate
POD_CLAIM_NAME_ANNOTATION = "resource.kubernetes.io/pod-claim-name"
METADATA_SUBDIR = "dra-device-metadata"
SOCKET_NAME = deviceinfo.DEVICE_SOCKET_NAME
HOST_FOLDER_PREFIX = "dra-"
#: CDI vendor/class per device kind
CDI_KINDS = {"vhostuser": "vhostplug.io/vhostuser", "vdpa": "vhostplug.io/vdpa"}


@dataclass(frozen=True)
class ClaimRef:
    namespace: str
    name: str
    uid: str
    #: the pod's own name for the claim, for claims made from a ResourceClaimTemplate
    pod_claim_name: str | None = None

    @property
    def subdir(self) -> str:
        """``resourceclaimtemplates/<podClaimName>`` or ``resourceclaims/<claimName>`` (KEP-5304's split)."""
        if self.pod_claim_name:
            return f"{devicemetadata.TEMPLATES_DIR}/{self.pod_claim_name}"
        return f"{devicemetadata.CLAIMS_DIR}/{self.name}"


@dataclass(frozen=True)
class Layout:
    socket_root: Path
    container_root: str
    plugin_dir: Path
    cdi_dir: Path
    driver: str

    def host_folder(self, claim: ClaimRef, request: str) -> Path:
        digest = hashlib.sha256(f"{claim.uid}/{request}".encode()).hexdigest()[:16]
        return self.socket_root / f"{HOST_FOLDER_PREFIX}{digest}"

    def container_folder(self, claim: ClaimRef, request: str) -> str:
        return f"{self.container_root.rstrip('/')}/dra/{claim.subdir}/{request}"

    def metadata_claim_dir(self, claim: ClaimRef) -> Path:
        return self.plugin_dir / METADATA_SUBDIR / f"{claim.namespace}_{claim.name}"

    def metadata_file(self, claim: ClaimRef, request: str) -> Path:
        return self.metadata_claim_dir(claim) / request / "metadata.json"

    def metadata_container_file(self, claim: ClaimRef, request: str) -> str:
        template = claim.pod_claim_name is not None
        name = claim.pod_claim_name if claim.pod_claim_name is not None else claim.name
        rel = devicemetadata.relative_path(self.driver, name, request, from_template=template)
        return f"{devicemetadata.CONTAINER_ROOT}/{rel}"

    def cdi_file(self, claim: ClaimRef, kind: str) -> Path:
        return self.cdi_dir / f"{self.driver}_{kind}_{claim.uid}.json"

    @staticmethod
    def cdi_device_name(claim: ClaimRef, request: str) -> str:
        return f"{claim.uid}-{request}"

    def cdi_device_id(self, claim: ClaimRef, request: str, kind: str) -> str:
        return f"{CDI_KINDS[kind]}={self.cdi_device_name(claim, request)}"
