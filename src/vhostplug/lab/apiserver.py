"""A stand-in kube-apiserver for the lab and tests: the REST protocol over real HTTP(S) on 127.0.0.1, any resource path.

:class:`ApiServer` serves ``/api/v1/...`` and ``/apis/{group}/{version}/...`` (namespaced and cluster-scoped, with
``/status``) from an :class:`~vhostplug.lab.apistore.Store`: GET, LIST (label and field selectors, ``limit`` and
``continue``), WATCH (``?watch=true``, from a ``resourceVersion``, or ``sendInitialEvents`` ending with a bookmark), POST, PUT, PATCH (JSON merge patch; strategic
merge and server-side apply are applied as merge patches; JSON patch), DELETE (preconditions) and DELETE of a
collection, answering errors with ``Status`` objects as kube-apiserver does. It runs in its own thread and event loop
(start/stop, or a ``with`` block), optionally with TLS (a self-signed certificate, :func:`make_cert`) and a bearer
token, and writes a kubeconfig any client (lightkube's ``KubeConfig``) can use. Every request is logged
(:attr:`ApiServer.requests`); other modules add request body decoders per content type
(:meth:`ApiServer.register_decoder`, e.g. Kubernetes protobuf); tests seed and read objects through
:meth:`ApiServer.put`, :meth:`ApiServer.get`, :meth:`ApiServer.list` and wait on writes with
:meth:`ApiServer.wait_for`; :meth:`ApiServer.fail` makes the next matching requests fail.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from aiohttp import web

from vhostplug.lab import apipatch
from vhostplug.lab.apistore import JSON, KNOWN, ApiError, Event, Resource, Store
from vhostplug.lab.apiwatch import served, watch

LOG = logging.getLogger(__name__)
T = TypeVar("T")
#: A request body decoder: (resource, subresource, body) -> the object as JSON.
Decoder = Callable[[Resource, str, bytes], Any]
MERGE = ("application/merge-patch+json", "application/strategic-merge-patch+json")
APPLY = "application/apply-patch+yaml"
JSON_PATCH = "application/json-patch+json"
#: kube-apiserver's request body limit
MAX_BODY = 3 * 1024 * 1024


def make_cert(folder: Path, stem: str) -> tuple[Path, Path]:
    """A self-signed EC certificate for ``localhost``/127.0.0.1: ``(<stem>.crt, <stem>.key)`` in ``folder``."""
    cert, key = folder / f"{stem}.crt", folder / f"{stem}.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    key.chmod(0o600)
    return cert, key


@dataclass(frozen=True)
class Request:
    """One request as the server saw it."""

    method: str
    path: str  # as sent, escapes included
    query: dict[str, str]
    content_type: str
    body: bytes
    status: int = 0  # 0 while it runs


@dataclass
class _Fault:
    method: str
    path: str
    code: int
    times: int | None


@dataclass(frozen=True)
class Route:
    """What a request path names."""

    group: str
    version: str
    namespace: str | None
    plural: str
    name: str | None
    subresource: str


def parse_path(path: str) -> Route | None:
    """The resource a kube-apiserver path (as sent: escapes are undone per segment) names, or None for a path
    outside ``/api/v1`` and ``/apis``."""
    parts = [urllib.parse.unquote(p) for p in path.split("/") if p]
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    ns = None
    if rest[0] == "namespaces" and len(rest) >= 3 and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
        ns, rest = rest[1], rest[2:]
    if len(rest) > 3:
        return None
    return Route(group, version, ns, rest[0], rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else "")


def _answer(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=json.dumps(body).encode(), content_type="application/json")


@dataclass(repr=False)
class ApiServer:
    """The stand-in kube-apiserver; ``tls_dir`` set: HTTPS with a fresh self-signed certificate there."""

    tls_dir: Path | None = None
    token: str | None = None
    host: str = "127.0.0.1"
    store: Store = field(default_factory=Store)
    port: int = 0
    cert: Path | None = None
    decoders: dict[str, Decoder] = field(default_factory=dict)
    _requests: list[Request] = field(default_factory=list)
    _faults: list[_Fault] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None
    _watches: set[asyncio.Queue[Event | None]] = field(default_factory=set)
    _held: list[tuple[str, str, asyncio.Event]] = field(default_factory=list)

    # -- lifecycle -------------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"{'https' if self.cert else 'http'}://{self.host}:{self.port}"

    def start(self) -> ApiServer:
        """Serve from a thread of its own until :meth:`stop`; returns when it listens."""
        ctx = None
        if self.tls_dir is not None:
            self.cert, key = make_cert(self.tls_dir, "apiserver")
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(self.cert, key)
        loop = self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def serve() -> None:
            app = web.Application(client_max_size=MAX_BODY)
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.host, self.port, ssl_context=ctx)
            await site.start()
            server = site._server
            assert server is not None
            self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]

        def run() -> None:
            loop.run_until_complete(serve())
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="apiserver", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise RuntimeError("the stand-in kube-apiserver did not start within 30 s")
        return self

    def stop(self) -> None:
        """Stop serving (open watches end) and join the thread."""
        loop, thread, runner = self._loop, self._thread, self._runner
        if loop is None or thread is None or runner is None:
            return

        async def close() -> None:
            for queue in list(self._watches):
                queue.put_nowait(None)
            await runner.cleanup()

        asyncio.run_coroutine_threadsafe(close(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()
        self._loop = self._thread = self._runner = None

    def __repr__(self) -> str:
        return f"ApiServer({self.url}, {len(self.store.objects)} objects, {len(self._requests)} requests)"

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def kubeconfig(self, path: Path, *, user: str = "lab") -> Path:
        """Write a kubeconfig (mode 0600) that points at this server (with its token and CA, if any)."""
        cluster: JSON = {"server": self.url}
        if self.cert is not None:
            cluster["certificate-authority"] = str(self.cert)
        creds: JSON = {"token": self.token} if self.token else {}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "lab",
            "clusters": [{"name": "lab", "cluster": cluster}],
            "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": user}}],
            "users": [{"name": user, "user": creds}],
        }
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(config))
        return path

    # -- hooks for tests and other modules ---------------------------------------------------------------------------

    def register_decoder(self, content_type: str, decoder: Decoder) -> None:
        """Accept request bodies of ``content_type`` (e.g. ``application/vnd.kubernetes.protobuf``) via ``decoder``."""
        self.decoders[content_type] = decoder

    @property
    def requests(self) -> list[Request]:
        """Every request so far, in order."""
        with self.store.lock:
            return list(self._requests)

    def fail(self, method: str, path: str, code: int, times: int | None = 1) -> None:
        """Answer the next ``times`` requests (None: all) of ``method`` on exactly ``path`` (as sent, escapes
        included) with ``code`` and a Status object."""
        with self.store.lock:
            self._faults.append(_Fault(method.upper(), path, code, times))

    def hold(self, method: str, path_prefix: str) -> None:
        """Leave every request of ``method`` whose path (as sent) starts with ``path_prefix`` unanswered until
        :meth:`release`: a test sees how many such requests its client has under way at once (:meth:`in_flight`)."""
        with self.store.lock:
            self._held.append((method.upper(), path_prefix, asyncio.Event()))

    def release(self) -> None:
        """Answer every held request, and hold no more."""
        with self.store.lock:
            held, self._held = self._held, []
        loop = self._loop
        for *_, event in held:
            if loop is not None:
                loop.call_soon_threadsafe(event.set)

    def in_flight(self, method: str, path_prefix: str = "") -> list[Request]:
        """The requests of ``method`` under ``path_prefix`` not answered yet."""
        return [r for r in self.requests if r.status == 0 and r.method == method and r.path.startswith(path_prefix)]

    def resource_for(self, api_version: str, kind: str, plural: str | None = None) -> Resource:
        """The resource of ``kind`` in ``api_version`` (``plural`` names one it does not know)."""
        group, _, version = api_version.rpartition("/")
        if plural is None:
            found = [r for r in KNOWN.values() if r.group == group and r.kind == kind]
            if not found:
                raise KeyError(f"{api_version} {kind} is not known: name its plural")
            return found[0].at(version)
        known = KNOWN.get((group, plural))
        return known.at(version) if known else Resource(group, version, plural, kind, True)

    def put(self, obj: JSON, *, plural: str | None = None, namespaced: bool | None = None) -> JSON:
        """Seed: create ``obj`` or replace the object of that name, status included; returns it as stored."""
        res = self.resource_for(obj["apiVersion"], obj["kind"], plural)
        if namespaced is not None:
            res = Resource(res.group, res.version, res.plural, res.kind, namespaced, res.status, res.fields)
        ns = obj["metadata"].get("namespace", "default") if res.namespaced else ""
        with self.store.lock:
            with contextlib.suppress(ApiError):
                self.store.delete(res, ns, obj["metadata"]["name"])
            return self.store.create(res, ns, obj, keep_status=True)

    def get(self, api_version: str, kind: str, name: str, namespace: str = "", *, plural: str | None = None) -> JSON | None:  # fmt: skip
        """The stored object, or None."""
        try:
            return self.store.get(self.resource_for(api_version, kind, plural), namespace, name)
        except ApiError:
            return None

    def list(self, api_version: str, kind: str, namespace: str | None = None, *, plural: str | None = None) -> list[JSON]:  # fmt: skip
        """The stored objects of a kind (``namespace`` None: all)."""
        return self.store.select(self.resource_for(api_version, kind, plural), namespace, lambda _: True)[1]

    def wait_for(self, check: Callable[[], T | None], timeout: float = 30) -> T:
        """Wait until ``check()`` returns something other than None/False (re-checked after every write and every
        answered request)."""
        deadline = time.monotonic() + timeout
        with self.store.changed:
            while True:
                value = check()
                if value is not None and value is not False:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"the stand-in kube-apiserver saw no write satisfying the check in {timeout} s")
                self.store.changed.wait(left)

    # -- HTTP ------------------------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read() if request.can_read_body else b""
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip()
        query = dict(request.query)
        entry = Request(request.method, request.rel_url.raw_path, query, ctype, body)
        with self.store.lock:
            at = len(self._requests)
            self._requests.append(entry)  # first: a WATCH is logged while it runs
            self.store.changed.notify_all()  # wait_for() may wait for a request to arrive
            held = [e for m, prefix, e in self._held if m == entry.method and entry.path.startswith(prefix)]
        status = 500
        try:
            for event in held:
                await event.wait()
            response = await self._serve(request, body, ctype, query)
            status = response.status
            return response
        except ApiError as exc:
            status = exc.code
            return _answer(exc.code, exc.status)
        except Exception as exc:  # a bug here: still a Status object, as kube-apiserver answers a panic
            LOG.exception("stand-in kube-apiserver: %s %s failed", request.method, request.path)
            status = 500
            return _answer(500, ApiError(500, "InternalError", f"{type(exc).__name__}: {exc}").status)
        finally:
            with self.store.lock:
                self._requests[at] = dataclasses.replace(entry, status=status)
                self.store.changed.notify_all()  # wait_for() checks may look at requests too

    def _fault(self, method: str, path: str) -> None:
        with self.store.lock:
            for fault in self._faults:
                if (fault.times is None or fault.times > 0) and (fault.method, fault.path) == (method, path):
                    if fault.times is not None:
                        fault.times -= 1
                    raise ApiError(fault.code, "InternalError" if fault.code >= 500 else "BadRequest", "injected fault")

    async def _serve(self, request: web.Request, body: bytes, ctype: str, query: dict[str, str]) -> web.StreamResponse:
        if self.token is not None and request.headers.get("Authorization") != f"Bearer {self.token}":
            raise ApiError(401, "Unauthorized", "Unauthorized")
        self._fault(request.method, request.rel_url.raw_path)
        if request.path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok")
        if request.path == "/version":
            return _answer(200, {"major": "1", "minor": "34", "gitVersion": "v1.34.0-vhostplug-lab"})
        route = parse_path(request.rel_url.raw_path)
        if route is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        res = self.store.resource(route.group, route.version, route.plural, route.namespace is not None)
        known = KNOWN.get((route.group, route.plural))
        if known is not None and route.namespace is not None and not known.namespaced:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if res.namespaced and route.namespace is None and (route.name is not None or request.method != "GET"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        ns = route.namespace or ""
        method = request.method
        if route.name is None:
            if method == "GET":
                if query.get("watch") in ("true", "1"):
                    return await watch(request, self.store, res, route.namespace, query, self._watches)
                return _answer(200, self._list(res, route.namespace, query))
            if method == "POST":
                return _answer(201, self._served(res, self.store.create(res, ns, self._decode(res, "", ctype, body))))
            if method == "DELETE":
                match = self.store.matcher(res, query.get("labelSelector", ""), query.get("fieldSelector", ""))
                _, items = self.store.select(res, route.namespace, match)
                gone = [self.store.delete(res, ns, i["metadata"]["name"]) for i in items]
                return _answer(200, {"apiVersion": res.api_version, "kind": f"{res.kind}List", "metadata": {},
                                     "items": [self._served(res, g) for g in gone]})  # fmt: skip
            raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on a collection")
        name, sub = route.name, route.subresource
        if sub not in ("", "status"):
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({sub})")
        if method == "GET":
            return _answer(200, self._served(res, self.store.get(res, ns, name)))
        if method == "PUT":
            obj = self._decode(res, sub, ctype, body)
            return _answer(200, self._served(res, self.store.update(res, ns, name, obj, subresource=sub)))
        if method == "PATCH":
            return self._patch(res, ns, name, sub, ctype, body, query)
        if method == "DELETE":
            try:
                opts = json.loads(body) if body.strip() else {}
            except ValueError:
                raise ApiError(400, "BadRequest", "the DeleteOptions are not valid JSON") from None
            pre = opts.get("preconditions") if isinstance(opts, dict) else None
            return _answer(200, self._served(res, self.store.delete(res, ns, name, pre)))
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported")

    def _decode(self, res: Resource, sub: str, ctype: str, body: bytes) -> Any:
        if ctype in ("application/json", "", "application/yaml"):
            try:
                return yaml.safe_load(body) if ctype == "application/yaml" else json.loads(body)
            except ValueError as exc:
                raise ApiError(400, "BadRequest", f"the body is not valid JSON: {exc}") from None
        decoder = self.decoders.get(ctype)
        if decoder is None:
            raise ApiError(415, "UnsupportedMediaType", f'the body of the request was in an unknown format - accepted media types include: application/json, application/yaml{"".join(", " + c for c in self.decoders)}')  # fmt: skip
        try:
            return decoder(res, sub, body)
        except ApiError:
            raise
        except Exception as exc:
            raise ApiError(400, "BadRequest", f"the body does not decode as {ctype}: {exc}") from None

    def _patch(
        self, res: Resource, ns: str, name: str, sub: str, ctype: str, body: bytes, query: dict[str, str]
    ) -> web.Response:
        try:
            patch = yaml.safe_load(body) if ctype == APPLY else json.loads(body)
        except ValueError as exc:
            raise ApiError(400, "BadRequest", f"the patch is not valid: {exc}") from None

        def apply(obj: JSON) -> JSON:
            try:
                if ctype == JSON_PATCH:
                    out: JSON = apipatch.json_patch(obj, patch)
                    return out
                return dict(apipatch.merge_patch(obj, patch))
            except apipatch.PatchError as exc:
                raise ApiError(422, "Invalid", str(exc)) from None

        if ctype not in (*MERGE, JSON_PATCH, APPLY):
            raise ApiError(415, "UnsupportedMediaType", f"the patch type {ctype!r} is not supported")
        if ctype == APPLY:
            if not query.get("fieldManager"):
                raise ApiError(400, "BadRequest", "PatchOptions.meta.k8s.io is invalid: fieldManager: Required value: is required for apply patch")  # fmt: skip
            with self.store.lock:
                try:
                    self.store.get(res, ns, name)
                except ApiError as exc:
                    if exc.code != 404 or sub:
                        raise
                    return _answer(201, self._served(res, self.store.create(res, ns, patch)))
        return _answer(200, self._served(res, self.store.patch(res, ns, name, apply, subresource=sub)))

    @staticmethod
    def _served(res: Resource, obj: JSON) -> JSON:
        return served(res, obj)

    def _list(self, res: Resource, ns: str | None, query: dict[str, str]) -> JSON:
        match = self.store.matcher(res, query.get("labelSelector", ""), query.get("fieldSelector", ""))
        rv, items = self.store.select(res, ns, match)
        meta: JSON = {"resourceVersion": str(rv)}
        start = 0
        if query.get("continue"):
            try:
                token = json.loads(base64.urlsafe_b64decode(query["continue"]))
                start, rv = int(token["start"]), int(token["rv"])
            except (ValueError, KeyError, TypeError):
                raise ApiError(400, "BadRequest", "continue key is not valid") from None
            meta["resourceVersion"] = str(rv)
        try:
            limit = int(query.get("limit") or 0)
        except ValueError:
            raise ApiError(400, "BadRequest", f"limit {query['limit']!r} is not a number") from None
        if limit > 0 and start + limit < len(items):
            meta["continue"] = base64.urlsafe_b64encode(
                json.dumps({"rv": rv, "start": start + limit}).encode()
            ).decode()
            meta["remainingItemCount"] = len(items) - start - limit
            items = items[start : start + limit]
        else:
            items = items[start:]
        return {"apiVersion": res.api_version, "kind": f"{res.kind}List", "metadata": meta,
                "items": [self._served(res, i) for i in items]}  # fmt: skip
