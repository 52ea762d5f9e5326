"""ResourceSlices (and the node's UID) through lightkube's generic resources: the :class:`~vhostplug.protocols.SliceApi`
the publisher uses. Reaches the API server the ``dra.apiServer`` section names (URL, token file, CA file), or
in-cluster through the pod's service account when no URL is given."""

from __future__ import annotations

from typing import Any

from lightkube import ApiError, Client, KubeConfig
from lightkube.generic_resource import create_global_resource

from vhostplug.dra.config import ApiServerConfig
from vhostplug.protocols import SliceApiError

JSON = dict[str, Any]
ResourceSlice = create_global_resource("resource.k8s.io", "v1", "ResourceSlice", "resourceslices")
Node = create_global_resource("", "v1", "Node", "nodes")
FIELD_MANAGER = "vhostplug"


def kubeconfig(config: ApiServerConfig) -> Any:
    """A lightkube configuration for ``config`` (in-cluster when it names no URL)."""
    if config.url is None:
        return KubeConfig.from_service_account()
    cluster: JSON = {"server": config.url}
    if config.ca_file is not None:
        cluster["certificate-authority"] = str(config.ca_file)
    user: JSON = {"tokenFile": str(config.token_file)} if config.token_file is not None else {}
    return KubeConfig.from_dict(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "agent",
            "clusters": [{"name": "api", "cluster": cluster}],
            "contexts": [{"name": "agent", "context": {"cluster": "api", "user": "agent"}}],
            "users": [{"name": "agent", "user": user}],
        }
    )


def _plain(obj: Any) -> JSON:
    out: JSON = obj.to_dict()
    return out


def _error(exc: Exception) -> SliceApiError:
    if isinstance(exc, ApiError):
        return SliceApiError(int(exc.status.code or 0), str(exc.status.message or exc))
    return SliceApiError(0, f"API server unreachable: {exc}")


class LightkubeSliceApi:
    def __init__(self, config: ApiServerConfig) -> None:
        try:
            kc = kubeconfig(config)
        except Exception as exc:  # lightkube's ConfigError and friends: the agent refuses to start, naming it
            raise ValueError(f"dra.apiServer: {exc}") from None
        self.client = Client(
            kc,
            timeout=config.timeout_seconds,  # type: ignore[arg-type]  # httpx takes seconds too
            field_manager=FIELD_MANAGER,
        )

    def list_slices(self, node: str, driver: str) -> list[JSON]:
        try:
            found = self.client.list(ResourceSlice, fields={"spec.nodeName": node, "spec.driver": driver})
            return [_plain(s) for s in found]
        except Exception as exc:  # ApiError, transport errors (refused, TLS, timeouts)
            raise _error(exc) from None

    def create_slice(self, obj: JSON) -> JSON:
        try:
            out = _plain(self.client.create(ResourceSlice.from_dict(obj)))
            return out
        except Exception as exc:  # ApiError, transport errors (refused, TLS, timeouts)
            raise _error(exc) from None

    def replace_slice(self, obj: JSON) -> JSON:
        try:
            out = _plain(self.client.replace(ResourceSlice.from_dict(obj)))
            return out
        except Exception as exc:  # ApiError, transport errors (refused, TLS, timeouts)
            raise _error(exc) from None

    def delete_slice(self, name: str) -> None:
        try:
            self.client.delete(ResourceSlice, name)
        except Exception as exc:  # ApiError, transport errors
            if not (isinstance(exc, ApiError) and exc.status.code == 404):
                raise _error(exc) from None

    def node_uid(self, node: str) -> str | None:
        """The Node's UID (slices name it as their owner, so they go with the node), None if it cannot be read."""
        try:
            meta = self.client.get(Node, node).metadata
            return str(meta.uid) if meta is not None and meta.uid else None
        except Exception:  # ApiError, transport errors
            return None

    def close(self) -> None:
        self.client.close()
