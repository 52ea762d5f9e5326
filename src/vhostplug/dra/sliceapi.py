"""ResourceSlices (and the node's UID) through the driver's own API server client (:class:`~vhostplug.dra.kubeapi.KubeApi`:
the ``dra.apiServer`` URL, token file and CA, or in-cluster through the pod's service account): the
:class:`~vhostplug.protocols.SliceApi` the publisher uses. Errors become :class:`~vhostplug.protocols.SliceApiError`."""

from __future__ import annotations

import urllib.parse
from typing import Any

from vhostplug.dra.kubeapi import RESOURCE_API, ApiError, KubeApi
from vhostplug.protocols import SliceApiError

JSON = dict[str, Any]
SLICES = f"{RESOURCE_API}/resourceslices"


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


class KubeSliceApi:
    def __init__(self, api: KubeApi) -> None:
        self.api = api

    def _call(self, method: str, path: str, body: JSON | None = None) -> JSON:
        try:
            return self.api.request(method, path, body)
        except ApiError as exc:
            raise SliceApiError(exc.code, exc.message) from None

    def list_slices(self, node: str, driver: str) -> list[JSON]:
        try:
            return self.api.list_slices(node, driver)
        except ApiError as exc:
            raise SliceApiError(exc.code, exc.message) from None

    def create_slice(self, obj: JSON) -> JSON:
        return self._call("POST", SLICES, obj)

    def replace_slice(self, obj: JSON) -> JSON:
        return self._call("PUT", f"{SLICES}/{_quote(obj['metadata']['name'])}", obj)

    def delete_slice(self, name: str) -> None:
        try:
            self._call("DELETE", f"{SLICES}/{_quote(name)}")
        except SliceApiError as exc:
            if exc.code != 404:
                raise

    def node_uid(self, node: str) -> str | None:
        """The Node's UID (slices name it as their owner, so they go with the node), None if it cannot be read."""
        try:
            uid = (self._call("GET", f"/api/v1/nodes/{_quote(node)}").get("metadata") or {}).get("uid")
        except SliceApiError:
            return None
        return str(uid) if uid else None

    def close(self) -> None:
        self.api.close()
