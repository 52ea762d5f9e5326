"""The pure libvirt domain XML rewrite of the vhostuser network binding: VMI JSON + domain XML in, domain XML out.

Owns: parsing the few VMI fields the binding needs, regenerating one ``<interface type='vhostuser'>`` per bound VMI
interface (keyed by alias ``ua-<name>``, so repeated calls never append twice), and sharing guest memory with the
vhost-user backend. No I/O here: the sidecar resolves socket paths and passes them in. ``rewrite(rewrite(x)) ==
rewrite(x)`` for every input; namespaces (``xmlns:qemu``) and comments are kept.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from vhostplug.model import MAX_SOCKET_PATH

DEFAULT_BINDING_NAME = "vhostuser"
QUEUE_SIZES = (256, 512, 1024)
DEFAULT_QUEUE_SIZE = 1024
ALIAS_PREFIX = "ua-"


class BindingError(Exception):
    """The binding cannot serve this VMI. ``precondition`` means "not yet / not here" rather than "bad input"."""

    def __init__(self, message: str, *, precondition: bool = False) -> None:
        super().__init__(message)
        self.precondition = precondition


@dataclass(frozen=True)
class VmiInterface:
    """One ``spec.domain.devices.interfaces[]`` entry."""

    name: str
    binding: str | None = None
    mac: str | None = None
    pci_address: str | None = None
    acpi_index: int | None = None


@dataclass(frozen=True)
class ClaimRef:
    """A network whose device comes from a DRA ResourceClaim: ``networks[].resourceClaim`` and how the pod gets
    that claim (``spec.resourceClaims[]``: by name, or made from a template)."""

    claim_name: str
    request_name: str
    #: the ResourceClaim's own name when the pod names one directly; None when it is made from a template
    resource_claim_name: str | None = None


@dataclass(frozen=True)
class Vmi:
    """The VMI fields the vhostuser binding reads."""

    name: str = ""
    namespace: str = ""
    interfaces: tuple[VmiInterface, ...] = ()
    network_names: tuple[str, ...] = ()
    #: networks whose device is a DRA claim's, by network name
    claims: Mapping[str, ClaimRef] = field(default_factory=dict)
    multiqueue: bool = False
    transitional: bool = False
    vcpus: int = 1

    def bound(self, binding_name: str) -> list[VmiInterface]:
        return [i for i in self.interfaces if i.binding == binding_name]


@dataclass(frozen=True)
class Socket:
    """Where QEMU finds the vhost-user socket of one interface; ``mode`` is QEMU's role (device-info's mode)."""

    path: str
    mode: str = "server"
    #: the interface's MTU when the device says it (DRA device metadata); None leaves it to the guest
    mtu: int | None = None


@dataclass(frozen=True)
class Options:
    binding_name: str = DEFAULT_BINDING_NAME
    queue_size: int = DEFAULT_QUEUE_SIZE

    def __post_init__(self) -> None:
        if self.queue_size not in QUEUE_SIZES:
            raise ValueError(f"rx/tx queue size must be one of {QUEUE_SIZES}, not {self.queue_size}")


def _pos_int(value: Any, what: str) -> int:
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BindingError(f"VMI {what} must be a positive integer, not {value!r}")
    return value


def parse_vmi(data: bytes | str | Mapping[str, Any]) -> Vmi:
    """Read a VMI from its JSON (as KubeVirt passes it to OnDefineDomain)."""
    if isinstance(data, Mapping):
        obj: Any = data
    else:
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BindingError(f"the VMI sent by KubeVirt is not valid JSON: {exc}") from exc
    if not isinstance(obj, Mapping):
        raise BindingError("the VMI sent by KubeVirt is not a JSON object")
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    domain = spec.get("domain") or {}
    devices = domain.get("devices") or {}
    cpu = domain.get("cpu") or {}
    if not all(isinstance(x, Mapping) for x in (meta, spec, domain, devices, cpu)):
        raise BindingError("the VMI's metadata/spec/domain/devices/cpu must be JSON objects")
    interfaces = []
    for raw in devices.get("interfaces") or []:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str) or not raw["name"]:
            raise BindingError(f"VMI interface without a name: {raw!r}")
        binding = raw.get("binding")
        acpi = raw.get("acpiIndex")
        if acpi is not None and (isinstance(acpi, bool) or not isinstance(acpi, int) or acpi < 1):
            raise BindingError(f"VMI interface {raw['name']}: acpiIndex must be a positive integer, not {acpi!r}")
        interfaces.append(
            VmiInterface(
                name=raw["name"],
                binding=binding.get("name") if isinstance(binding, Mapping) else None,
                mac=raw.get("macAddress") or None,
                pci_address=raw.get("pciAddress") or None,
                acpi_index=acpi,
            )
        )
    networks = tuple(
        str(n["name"]) for n in spec.get("networks") or [] if isinstance(n, Mapping) and isinstance(n.get("name"), str)
    )
    claims = _claims(spec)
    vcpus = _pos_int(cpu.get("sockets"), "cpu.sockets")
    vcpus *= _pos_int(cpu.get("cores"), "cpu.cores")
    vcpus *= _pos_int(cpu.get("threads"), "cpu.threads")
    return Vmi(
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace", "")),
        interfaces=tuple(interfaces),
        network_names=networks,
        claims=claims,
        multiqueue=devices.get("networkInterfaceMultiqueue") is True,
        transitional=devices.get("useVirtioTransitional") is True,
        vcpus=vcpus,
    )


def _claims(spec: Mapping[str, Any]) -> dict[str, ClaimRef]:
    """``networks[].resourceClaim`` entries, each with how the pod gets its claim (``spec.resourceClaims[]``)."""
    pod_claims = {
        c["name"]: c for c in spec.get("resourceClaims") or [] if isinstance(c, Mapping) and isinstance(c.get("name"), str)
    }
    claims: dict[str, ClaimRef] = {}
    for net in spec.get("networks") or []:
        if not isinstance(net, Mapping) or not isinstance(net.get("name"), str) or "resourceClaim" not in net:
            continue
        ref = net["resourceClaim"]
        if not isinstance(ref, Mapping) or not all(
            isinstance(ref.get(k), str) and ref[k] for k in ("claimName", "requestName")
        ):
            raise BindingError(
                f"VMI network {net['name']}: resourceClaim needs claimName and requestName strings, not {ref!r}"
            )
        pod_claim = pod_claims.get(ref["claimName"], {})
        direct = pod_claim.get("resourceClaimName")
        claims[net["name"]] = ClaimRef(
            ref["claimName"], ref["requestName"], direct if isinstance(direct, str) and direct else None
        )
    return claims


def pod_interface_name(network_name: str) -> str:
    """The pod interface KubeVirt names for a network: ``pod`` + first 11 hex of sha256(network name)."""
    return "pod" + hashlib.sha256(network_name.encode()).hexdigest()[:11]


def check_socket_path(path: str) -> str:
    n = len(path.encode())
    if n > MAX_SOCKET_PATH:
        raise BindingError(
            f"vhost-user socket path {path!r} is {n} bytes long; a unix socket path may have at most "
            f"{MAX_SOCKET_PATH} bytes: use a shorter links folder or interface name"
        )
    return path


def _parse_pci(address: str) -> dict[str, str]:
    parts = address.replace(".", ":").split(":")
    if len(parts) == 3:
        parts.insert(0, "0000")
    try:
        dom, bus, slot, fn = (int(p, 16) for p in parts)
    except ValueError as exc:
        raise BindingError(f"pciAddress {address!r} is not of the form DDDD:BB:SS.F") from exc
    if len(parts) != 4 or dom > 0xFFFF or bus > 0xFF or slot > 0x1F or fn > 7:
        raise BindingError(f"pciAddress {address!r} is out of range (domain:bus:slot.function)")
    return {
        "type": "pci",
        "domain": f"0x{dom:04x}",
        "bus": f"0x{bus:02x}",
        "slot": f"0x{slot:02x}",
        "function": f"0x{fn:x}",
    }


def _parse_xml(domain_xml: bytes | str) -> Any:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=False, huge_tree=False)
    data = domain_xml.encode() if isinstance(domain_xml, str) else domain_xml
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise BindingError(f"the domain XML sent by KubeVirt does not parse: {exc}") from exc
    if root.tag != "domain":
        raise BindingError(f"the domain XML's root element is <{root.tag}>, not <domain>")
    return root


def _child(parent: Any, tag: str) -> Any:
    found = parent.find(tag)
    if found is None:
        found = etree.SubElement(parent, tag)
        _fix_indent(parent)
    return found


def _depth(elem: Any) -> int:
    d = 0
    p = elem.getparent()
    while p is not None:
        d += 1
        p = p.getparent()
    return d


def _fix_indent(parent: Any) -> None:
    """Give a freshly appended last child the same indentation as its siblings (cosmetic, deterministic)."""
    kids = list(parent)
    if not kids:
        return
    level = _depth(parent)
    new = kids[-1]
    if len(kids) == 1:
        parent.text = "\n" + "  " * (level + 1)
    else:
        prev = kids[-2]
        prev.tail = "\n" + "  " * (level + 1)
    new.tail = "\n" + "  " * level


def _memory_backing(root: Any) -> Any:
    """A new ``<memoryBacking>`` placed after ``<memory>``/``<currentMemory>`` (else at the end)."""
    anchor = None
    for tag in ("memory", "currentMemory"):
        found = root.find(tag)
        if found is not None:
            anchor = found
    if anchor is None:
        return _child(root, "memoryBacking")
    backing = etree.Element("memoryBacking")
    backing.tail = anchor.tail
    anchor.addnext(backing)
    return backing


def _share_memory(root: Any) -> None:
    cells = root.findall("cpu/numa/cell")
    for cell in cells:
        access = cell.get("memAccess")
        if access is not None and access != "shared":
            raise BindingError(
                f"NUMA cell {cell.get('id', '?')} has memAccess='{access}', but vhost-user needs guest memory "
                "shared with the dataplane: remove the setting or make it 'shared'"
            )
        cell.set("memAccess", "shared")
    backing = root.find("memoryBacking")
    if not cells:
        if backing is None:
            backing = _memory_backing(root)
        access = backing.find("access")
        if access is not None and access.get("mode") not in (None, "shared"):
            raise BindingError(
                f"memoryBacking has access mode='{access.get('mode')}', but vhost-user needs guest memory shared "
                "with the dataplane: remove the setting or make it 'shared'"
            )
        if access is None:
            access = _child(backing, "access")
        access.set("mode", "shared")
    if backing is not None and backing.find("hugepages") is not None:
        return
    if backing is None:
        backing = _memory_backing(root)
    source = backing.find("source")
    if source is None:
        _child(backing, "source").set("type", "memfd")
    elif source.get("type") == "anonymous":
        raise BindingError(
            "memoryBacking source type='anonymous' cannot be shared with a vhost-user backend: use memfd or hugepages"
        )


def _interface_element(iface: VmiInterface, vmi: Vmi, sock: Socket, old: Any, opts: Options, level: int) -> Any:
    el = etree.Element("interface", type="vhostuser")
    mac = iface.mac or (old.find("mac").get("address") if old is not None and old.find("mac") is not None else None)
    if mac:
        etree.SubElement(el, "mac", address=mac.lower())
    etree.SubElement(el, "source", type="unix", path=check_socket_path(sock.path), mode=sock.mode)
    etree.SubElement(el, "target", dev=pod_interface_name(iface.name))
    etree.SubElement(el, "model", type="virtio-transitional" if vmi.transitional else "virtio-non-transitional")
    driver = etree.SubElement(el, "driver")
    if vmi.multiqueue:
        driver.set("queues", str(vmi.vcpus))
    driver.set("rx_queue_size", str(opts.queue_size))
    driver.set("tx_queue_size", str(opts.queue_size))
    if sock.mtu is not None:
        etree.SubElement(el, "mtu", size=str(sock.mtu))
    etree.SubElement(el, "alias", name=ALIAS_PREFIX + iface.name)
    if iface.pci_address:
        etree.SubElement(el, "address", _parse_pci(iface.pci_address))
    elif old is not None and old.find("address") is not None:
        el.append(_copy(old.find("address")))
    if iface.acpi_index is not None:
        etree.SubElement(el, "acpi", index=str(iface.acpi_index))
    elif old is not None and old.find("acpi") is not None:
        el.append(_copy(old.find("acpi")))
    etree.indent(el, space="  ", level=level)
    return el


def _copy(elem: Any) -> Any:
    dup = etree.fromstring(etree.tostring(elem))
    dup.tail = None
    return dup


def _find_alias(devices: Any, alias: str) -> list[Any]:
    return [
        i for i in devices.findall("interface") if i.find("alias") is not None and i.find("alias").get("name") == alias
    ]


def rewrite(domain_xml: bytes | str, vmi: Vmi, sockets: Mapping[str, Socket], opts: Options | None = None) -> bytes:
    """Return the domain XML with every VMI interface bound to ``opts.binding_name`` as a vhost-user interface.

    ``sockets`` maps each bound VMI interface name to its (stable) socket. A bound interface without a socket is a
    :class:`BindingError`. The domain is left untouched when no interface uses the binding.
    """
    opts = opts or Options()
    root = _parse_xml(domain_xml)
    bound = vmi.bound(opts.binding_name)
    if not bound:
        return _serialize(root)
    devices = root.find("devices")
    if devices is None:
        devices = _child(root, "devices")
    for iface in bound:
        sock = sockets.get(iface.name)
        if sock is None:
            raise BindingError(f"no vhost-user socket known for interface {iface.name}", precondition=True)
        olds = _find_alias(devices, ALIAS_PREFIX + iface.name)
        old = olds[0] if olds else None
        new = _interface_element(iface, vmi, sock, old, opts, level=_depth(devices) + 1)
        if old is not None:
            new.tail = old.tail
            old.getparent().replace(old, new)
            for dup in olds[1:]:  # an earlier buggy writer appended twice: keep one
                _remove(dup)
        else:
            existing = devices.findall("interface")
            if existing:
                new.tail = existing[-1].tail
                if not (existing[-1].tail or "").strip():
                    existing[-1].tail = "\n" + "  " * (_depth(devices) + 1)
                existing[-1].addnext(new)
            else:
                devices.append(new)
                _fix_indent(devices)
    _share_memory(root)
    return _serialize(root)


def _remove(elem: Any) -> None:
    parent = elem.getparent()
    prev = elem.getprevious()
    if prev is not None:
        prev.tail = elem.tail
    else:
        parent.text = elem.tail
    parent.remove(elem)


def _serialize(root: Any) -> bytes:
    out: bytes = etree.tostring(root, encoding="utf-8", xml_declaration=False)
    return out
