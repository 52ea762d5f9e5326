"""WATCH for the stand-in kube-apiserver (:mod:`vhostplug.lab.apiserver`): one JSON line per event
(``{"type": ADDED|MODIFIED|DELETED|BOOKMARK, "object": ...}``) over a chunked response, replayed from a
``resourceVersion`` out of the store's history (410 Gone when older), or starting with the current objects as ADDED
(and, for a watch-list client asking ``sendInitialEvents``, a BOOKMARK marking their end), then live until
``timeoutSeconds`` (default 1800) or the server stops."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from vhostplug.lab.apistore import JSON, ApiError, Event, Resource, Store


def served(res: Resource, obj: JSON) -> JSON:
    """An object as served at the version the request named."""
    return obj | {"apiVersion": res.api_version}


async def watch(
    request: web.Request,
    store: Store,
    res: Resource,
    ns: str | None,
    query: dict[str, str],
    watches: set[asyncio.Queue[Event | None]],
) -> web.StreamResponse:
    """Stream the events of ``res`` (in ``ns``; None: all) that match the query's selectors as JSON lines, from
    ``resourceVersion`` (or the current objects first), until ``timeoutSeconds`` or ``None`` is put in its queue."""
    match = store.matcher(res, query.get("labelSelector", ""), query.get("fieldSelector", ""))
    queue: asyncio.Queue[Event | None] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def listener(event: Event) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, event)

    start = query.get("resourceVersion", "")
    initial = query.get("sendInitialEvents") == "true"
    if initial and query.get("allowWatchBookmarks") != "true":
        raise ApiError(422, "Invalid", "sendInitialEvents requires allowWatchBookmarks=true")
    with store.lock:
        if start in ("", "0") or initial:
            rv, items = store.select(res, ns, match)
            backlog = [Event("ADDED", rv, res.group, res.plural, ns or "", i) for i in items]
            if initial:  # a watch-list client (client-go's WatchListClient): the end of the initial state
                end = {"kind": res.kind, "apiVersion": res.api_version, "metadata": {"resourceVersion": str(rv),
                       "annotations": {"k8s.io/initial-events-end": "true"}}}  # fmt: skip
                backlog.append(Event("BOOKMARK", rv, res.group, res.plural, ns or "", end))
        else:
            try:
                since = store.since(int(start))
            except ValueError:
                raise ApiError(400, "BadRequest", f"invalid resourceVersion {start!r}") from None
            if since is None:
                raise ApiError(410, "Expired", f"too old resource version: {start}")
            backlog = since
        store.listeners.append(listener)
    watches.add(queue)
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    try:
        await response.prepare(request)
        for old in backlog:
            queue.put_nowait(old)
        deadline = loop.time() + float(query.get("timeoutSeconds") or 1800)
        while (left := deadline - loop.time()) > 0:
            try:
                event = await asyncio.wait_for(queue.get(), left)
            except TimeoutError:
                break
            if event is None:
                break
            if (event.group, event.plural) != (res.group, res.plural) or (ns is not None and event.namespace != ns):
                continue
            if event.type != "BOOKMARK" and not match(event.obj):
                continue
            line = {"type": event.type, "object": served(res, event.obj)}
            await response.write(json.dumps(line).encode() + b"\n")
    except ConnectionResetError:
        pass
    finally:
        with store.lock:
            store.listeners.remove(listener)
        watches.discard(queue)
    return response
