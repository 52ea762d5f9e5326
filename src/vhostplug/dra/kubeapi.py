"""A small synchronous client of kube-apiserver's REST API for the DRA driver's node side: read a ResourceClaim,
write its status, list this node's ResourceSlices. Keep-alive connections, one per thread (kubelet's gRPC calls
arrive on the server's worker threads); bearer token and CA of the pod's service account unless configured.

Errors are :class:`ApiError` with the HTTP code and the ``Status`` message the server answered.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import threading
import urllib.parse
from pathlib import Path
from typing import Any

from vhostplug.dra.config import ApiServerConfig

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
RESOURCE_API = "/apis/resource.k8s.io/v1"
JSON = dict[str, Any]


class ApiError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class KubeApi:
    def __init__(self, config: ApiServerConfig) -> None:
        url = config.url
        token_file, ca_file = config.token_file, config.ca_file
        if url is None:  # in-cluster
            host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
            if not host:
                raise ValueError("dra.apiServer.url is not set and KUBERNETES_SERVICE_HOST is not in the environment")
            url = f"https://{host}:{port}" if ":" not in host else f"https://[{host}]:{port}"
            token_file = token_file or SA_DIR / "token"
            ca_file = ca_file or SA_DIR / "ca.crt"
        parsed = urllib.parse.urlsplit(url)
        self.url = url
        self._https = parsed.scheme == "https"
        self._host = parsed.hostname or "localhost"
        self._port = parsed.port or (443 if self._https else 80)
        self._token_file = token_file
        self._ssl = ssl.create_default_context(cafile=str(ca_file) if ca_file else None) if self._https else None
        self._timeout = config.timeout_seconds
        self._local = threading.local()

    # -- transport --------------------------------------------------------------------------------------------
    def _conn(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._https:
                conn = http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout, context=self._ssl)
            else:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
            self._local.conn = conn
        return conn

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "Content-Type": "application/json", "User-Agent": "vhostplug-dra"}
        if self._token_file is not None:
            headers["Authorization"] = "Bearer " + Path(self._token_file).read_text().strip()  # rotated: read each time
        return headers

    def request(self, method: str, path: str, body: JSON | None = None) -> JSON:
        data = json.dumps(body).encode() if body is not None else None
        for attempt in (0, 1):  # a kept connection the server closed meanwhile: once more on a fresh one
            conn = self._conn()
            try:
                conn.request(method, path, body=data, headers=self._headers())
                resp = conn.getresponse()
                raw = resp.read()
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                conn.close()
                self._local.conn = None
                if attempt == 0 and isinstance(exc, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)):
                    continue
                raise ApiError(0, f"API server {self.url} unreachable: {exc}") from None
            break
        try:
            obj = json.loads(raw) if raw else {}
        except ValueError:
            obj = {"message": raw[:200].decode(errors="replace")}
        if resp.status >= 300:
            raise ApiError(resp.status, str(obj.get("message", resp.reason)) if isinstance(obj, dict) else resp.reason)
        if not isinstance(obj, dict):
            raise ApiError(resp.status, "the API server answered something other than an object")
        return obj

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- the calls the driver makes ----------------------------------------------------------------------------
    @staticmethod
    def claim_path(namespace: str, name: str) -> str:
        q = urllib.parse.quote
        return f"{RESOURCE_API}/namespaces/{q(namespace, safe='')}/resourceclaims/{q(name, safe='')}"

    def get_claim(self, namespace: str, name: str) -> JSON:
        return self.request("GET", self.claim_path(namespace, name))

    def replace_claim_status(self, claim: JSON) -> JSON:
        meta = claim.get("metadata", {})
        return self.request("PUT", self.claim_path(meta["namespace"], meta["name"]) + "/status", claim)

    def list_slices(self, node: str, driver: str) -> list[JSON]:
        sel = urllib.parse.quote(f"spec.nodeName={node},spec.driver={driver}", safe="")
        out = self.request("GET", f"{RESOURCE_API}/resourceslices?fieldSelector={sel}")
        items = out.get("items") or []
        return [i for i in items if isinstance(i, dict)]
