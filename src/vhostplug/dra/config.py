"""The agent's ``dra:`` section (off by default): the DRA driver's name, kubelet's plugin folders, the CDI folder,
this node's name and how to reach the API server. Validated with the rest of the agent configuration before
anything starts; see docs/dra.md."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from vhostplug import validation
from vhostplug.dra.sliceconfig import SlicesConfig

DRIVER_NAME = "vhostuser.vhostplug.io"
DEFAULT_PLUGINS_DIR = Path("/var/lib/kubelet/plugins")
DEFAULT_REGISTRY_DIR = Path("/var/lib/kubelet/plugins_registry")
DEFAULT_CDI_DIR = Path("/var/run/cdi")
#: a DNS subdomain (what Kubernetes accepts as a DRA driver name), at most 63 bytes as resource.k8s.io/v1 asks
_DRIVER_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ApiServerConfig(_Strict):
    """Where the API server is. Left out: in-cluster (``KUBERNETES_SERVICE_HOST``/``_PORT``, the pod's service
    account token and CA)."""

    url: str | None = None
    token_file: Path | None = Field(None, alias="tokenFile")
    ca_file: Path | None = Field(None, alias="caFile")
    timeout_seconds: float = Field(5.0, alias="timeoutSeconds", gt=0, le=60)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+/?$", v):
            raise ValueError(f"{v!r} is not an API server URL such as https://10.0.0.1:6443")
        return None if v is None else v.rstrip("/")


class DraConfig(_Strict):
    enabled: bool = False
    driver_name: str = Field(DRIVER_NAME, alias="driverName")
    #: kubelet's plugin folder: the DRA service socket is ``<pluginsDir>/<driverName>/dra.sock`` and the KEP-5304
    #: device metadata lives under ``<pluginsDir>/<driverName>/dra-device-metadata/``
    plugins_dir: Path = Field(DEFAULT_PLUGINS_DIR, alias="pluginsDir")
    #: kubelet's plugin watcher folder: the registration socket is ``<registryDir>/<driverName>-reg.sock``
    registry_dir: Path = Field(DEFAULT_REGISTRY_DIR, alias="registryDir")
    #: where the CDI specs of prepared claims go (one file per claim); the container runtime reads it
    cdi_dir: Path = Field(DEFAULT_CDI_DIR, alias="cdiDir")
    #: the cdiVersion the specs declare: 0.6.0 for the runtimes of Kubernetes >= 1.34 (containerd 2, CRI-O);
    #: 0.5.0 for runtimes whose CDI library predates 0.6 (podman 4.3 of Debian 12 ignores a 0.6.0 spec)
    cdi_version: Literal["0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0"] = Field("0.6.0", alias="cdiVersion")
    #: this node's name as in the claims' allocation (default: the NODE_NAME environment variable)
    node_name: str | None = Field(None, alias="nodeName", min_length=1, max_length=253)
    api_server: ApiServerConfig = Field(default_factory=ApiServerConfig, alias="apiServer")
    #: the versions of kubelet's DRA gRPC service served (kubelet picks the newest it knows)
    services: list[str] = Field(default_factory=lambda: ["v1", "v1beta1"], min_length=1)
    #: what the node publishes in its ResourceSlices (see vhostplug.dra.sliceconfig)
    slices: SlicesConfig = Field(default_factory=SlicesConfig)

    @field_validator("driver_name")
    @classmethod
    def _driver(cls, v: str) -> str:
        if len(v) > 63 or not _DRIVER_RE.match(v):
            raise ValueError(f"{v!r} is not a DRA driver name (a DNS subdomain of at most 63 bytes)")
        return v

    @field_validator("plugins_dir", "registry_dir", "cdi_dir")
    @classmethod
    def _abs(cls, v: Path) -> Path:
        return Path(validation.absolute_path(str(v), "path"))

    @field_validator("services")
    @classmethod
    def _services(cls, v: list[str]) -> list[str]:
        bad = [s for s in v if s not in ("v1", "v1beta1")]
        if bad:
            raise ValueError(f"unknown DRA service version(s) {bad}: this agent serves v1 and v1beta1")
        return list(dict.fromkeys(v))

    @property
    def node(self) -> str:
        name = self.node_name or os.environ.get("NODE_NAME", "")
        if not name:
            raise ValueError("dra.nodeName is not set and neither is the NODE_NAME environment variable")
        return name

    @property
    def plugin_dir(self) -> Path:
        return self.plugins_dir / self.driver_name

    @property
    def service_socket(self) -> Path:
        return self.plugin_dir / "dra.sock"

    @property
    def registration_socket(self) -> Path:
        return self.registry_dir / f"{self.driver_name}-reg.sock"
