"""libvirt domains' vhost-user interfaces (read with libvirt-python, imported lazily) and pure domain-XML edits.

``interfaces_of(xml)`` and ``flip_to_server(xml, paths)`` are pure (lxml only) so they are tested without libvirtd;
``read_domains(uri)`` talks to libvirtd.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lxml import etree

DEFAULT_URI = "qemu:///system"


class LibvirtUnavailable(Exception):
    """libvirt-python is missing or libvirtd cannot be reached."""


@dataclass(frozen=True)
class VhostConsumer:
    """One ``<interface type='vhostuser'>`` of one domain."""

    domain: str
    running: bool
    persistent: bool
    mac: str
    path: str
    mode: str  # QEMU's role: server | client
    alias: str = ""
    target: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "running": self.running,
            "mac": self.mac,
            "socket": self.path,
            "mode": self.mode,
            "alias": self.alias,
        }


def _attr(el: Any, path: str, attr: str) -> str:
    found = el.find(path)
    return str(found.get(attr, "")) if found is not None else ""


def interfaces_of(
    xml: str | bytes, domain: str = "", running: bool = False, persistent: bool = True
) -> list[VhostConsumer]:
    """The vhost-user interfaces of a domain XML."""
    root = etree.fromstring(xml.encode() if isinstance(xml, str) else xml)
    name = domain or (root.findtext("name") or "")
    out = []
    for iface in root.iterfind("devices/interface[@type='vhostuser']"):
        out.append(
            VhostConsumer(
                domain=name,
                running=running,
                persistent=persistent,
                mac=_attr(iface, "mac", "address"),
                path=_attr(iface, "source", "path"),
                mode=_attr(iface, "source", "mode") or "client",  # libvirt's default for vhostuser
                alias=_attr(iface, "alias", "name"),
                target=_attr(iface, "target", "dev"),
            )
        )
    return out


def flip_to_server(xml: str | bytes, new_paths: dict[str, str]) -> tuple[str, list[tuple[str, str]]]:
    """Rewrite each vhost-user interface whose source path is a key of ``new_paths`` to ``mode='server'`` at the
    mapped path. Returns the new XML and the (old, new) paths changed. Everything else is kept byte-for-byte in
    meaning (namespaces included)."""
    root = etree.fromstring(xml.encode() if isinstance(xml, str) else xml)
    changed = []
    for iface in root.iterfind("devices/interface[@type='vhostuser']"):
        source = iface.find("source")
        if source is None:
            continue
        old = source.get("path", "")
        if old in new_paths:
            source.set("type", "unix")
            source.set("path", new_paths[old])
            source.set("mode", "server")
            changed.append((old, new_paths[old]))
    return etree.tostring(root, encoding="unicode"), changed


def open_libvirt(uri: str) -> Any:
    """A libvirt connection, or :class:`LibvirtUnavailable` with the reason."""
    try:
        import libvirt
    except ImportError as exc:
        raise LibvirtUnavailable(f"libvirt-python is not installed: {exc}") from exc
    try:
        libvirt.registerErrorHandler(lambda *_: None, None)  # keep libvirt from printing to stderr itself
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise LibvirtUnavailable(f"cannot connect to libvirt at {uri}: {exc.get_error_message()}") from exc


def read_domains(uri: str) -> list[VhostConsumer]:
    """Every vhost-user interface of every domain (live XML of running domains, persistent XML of others)."""
    import libvirt

    conn = open_libvirt(uri)
    try:
        out: list[VhostConsumer] = []
        for dom in conn.listAllDomains():
            try:
                running = bool(dom.isActive())
                xml = dom.XMLDesc(0)
                out += interfaces_of(xml, dom.name(), running, bool(dom.isPersistent()))
            except libvirt.libvirtError:
                continue  # a domain that vanished while we listed
        return sorted(out, key=lambda c: (c.domain, c.alias, c.path))
    finally:
        conn.close()
