"""The pure domain rewrite: exact interface XML, memory sharing, errors, idempotence (hypothesis), schema validity."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from tests.unit.kubevirt.xmlcase import BASE_DOMAIN, validate, vhu, vmi
from vhostplug.kubevirt import domain as d

SOCK = {"net1": d.Socket("/var/run/vhostplug-links/net1/vhu.sock")}


def _iface(xml: bytes, alias: str) -> list[etree._Element]:
    return etree.fromstring(xml).xpath(f"/domain/devices/interface[alias/@name='{alias}']")  # type: ignore[no-any-return]


def test_pod_interface_name_matches_kubevirt() -> None:
    # the example in the KubeVirt vhostuser binding design: network "net1" -> pod6c270ef2f25
    assert d.pod_interface_name("net1") == "pod6c270ef2f25"
    assert len(d.pod_interface_name("x" * 200)) == 14


def test_interface_is_written_exactly() -> None:
    v = d.parse_vmi(
        vmi(
            vhu("net1", macAddress="02:AA:00:00:00:01", pciAddress="0000:02:00.0", acpiIndex=3),
            multiqueue=True,
            cpu={"sockets": 2, "cores": 2, "threads": 1},
        )
    )
    out = d.rewrite(BASE_DOMAIN, v, SOCK)
    (el,) = _iface(out, "ua-net1")
    assert el.get("type") == "vhostuser"
    assert el.find("mac").get("address") == "02:aa:00:00:00:01"
    src = el.find("source")
    assert (src.get("type"), src.get("path"), src.get("mode")) == ("unix", SOCK["net1"].path, "server")
    assert el.find("target").get("dev") == "pod6c270ef2f25"
    assert el.find("model").get("type") == "virtio-non-transitional"
    drv = el.find("driver")
    assert (drv.get("queues"), drv.get("rx_queue_size"), drv.get("tx_queue_size")) == ("4", "1024", "1024")
    addr = el.find("address")
    assert (addr.get("type"), addr.get("bus"), addr.get("slot"), addr.get("function")) == ("pci", "0x02", "0x00", "0x0")
    assert el.find("acpi").get("index") == "3"
    assert validate(out).returncode == 0, validate(out).stderr


def test_namespace_comments_and_other_devices_kept() -> None:
    out = d.rewrite(BASE_DOMAIN, d.parse_vmi(vmi(vhu("net1"))), SOCK)
    root = etree.fromstring(out)
    assert root.nsmap.get("qemu") == "http://libvirt.org/schemas/domain/qemu/1.0"
    assert b'<qemu:arg value="-s"/>' in out
    assert b"<!-- written by virt-launcher -->" in out
    assert len(_iface(out, "ua-default")) == 1


def test_transitional_no_multiqueue_and_queue_size_option() -> None:
    v = d.parse_vmi(vmi(vhu("net1"), transitional=True))
    out = d.rewrite(BASE_DOMAIN, v, SOCK, d.Options(queue_size=256))
    (el,) = _iface(out, "ua-net1")
    assert el.find("model").get("type") == "virtio-transitional"
    assert el.find("driver").get("queues") is None
    assert el.find("driver").get("rx_queue_size") == "256"
    with pytest.raises(ValueError, match="256, 512, 1024"):
        d.Options(queue_size=4096)


def test_only_the_named_binding_is_served() -> None:
    v = d.parse_vmi(vmi(vhu("net1"), {"name": "other", "binding": {"name": "passt"}}, {"name": "br", "bridge": {}}))
    out = d.rewrite(BASE_DOMAIN, v, SOCK)
    assert len(_iface(out, "ua-net1")) == 1
    assert not _iface(out, "ua-other") and not _iface(out, "ua-br")
    # a different binding name serves nothing and leaves memory alone
    out2 = d.rewrite(BASE_DOMAIN, v, SOCK, d.Options(binding_name="vhostuser-x"))
    assert not _iface(out2, "ua-net1")
    assert etree.fromstring(out2).find("memoryBacking") is None


def test_repeat_call_after_kubevirt_stripped_source_regenerates() -> None:
    v = d.parse_vmi(vmi(vhu("net1")))
    first = d.rewrite(BASE_DOMAIN, v, SOCK)
    root = etree.fromstring(first)
    (el,) = root.xpath("//interface[alias/@name='ua-net1']")
    el.remove(el.find("source"))
    el.remove(el.find("driver"))
    assert el.find("mac") is None
    etree.SubElement(el, "mac", address="02:00:00:00:00:99")  # a MAC libvirt assigned is kept when the VMI has none
    stripped = etree.tostring(root)
    again = d.rewrite(stripped, v, SOCK)
    (el2,) = _iface(again, "ua-net1")
    assert el2.find("source").get("path") == SOCK["net1"].path
    assert el2.find("driver").get("rx_queue_size") == "1024"
    assert el2.find("mac").get("address") == "02:00:00:00:00:99"


def test_duplicates_from_an_earlier_writer_collapse_to_one() -> None:
    v = d.parse_vmi(vmi(vhu("net1")))
    once = d.rewrite(BASE_DOMAIN, v, SOCK)
    root = etree.fromstring(once)
    (el,) = root.xpath("//interface[alias/@name='ua-net1']")
    el.addnext(etree.fromstring(etree.tostring(el)))
    assert len(root.xpath("//interface[alias/@name='ua-net1']")) == 2
    assert len(_iface(d.rewrite(etree.tostring(root), v, SOCK), "ua-net1")) == 1


NUMA = """<domain type='qemu'><name>n</name><memory unit='MiB'>256</memory><vcpu>2</vcpu>
<os><type arch='x86_64' machine='q35'>hvm</type></os>
<cpu><numa><cell id='0' cpus='0' memory='131072' unit='KiB'{a0}/><cell id='1' cpus='1' memory='131072' unit='KiB'/></numa></cpu>
<devices/></domain>"""


def test_numa_cells_get_shared_access() -> None:
    out = d.rewrite(NUMA.format(a0=""), d.parse_vmi(vmi(vhu("net1"))), SOCK)
    root = etree.fromstring(out)
    assert [c.get("memAccess") for c in root.iter("cell")] == ["shared", "shared"]
    assert root.find("memoryBacking/source").get("type") == "memfd"
    assert validate(out).returncode == 0


def test_explicit_private_memory_is_an_error_not_overwritten() -> None:
    v = d.parse_vmi(vmi(vhu("net1")))
    with pytest.raises(d.BindingError, match="memAccess='private'"):
        d.rewrite(NUMA.format(a0=" memAccess='private'"), v, SOCK)
    private = BASE_DOMAIN.replace("<os>", "<memoryBacking><access mode='private'/></memoryBacking><os>")
    with pytest.raises(d.BindingError, match="mode='private'"):
        d.rewrite(private, v, SOCK)


def test_hugepages_get_no_memfd() -> None:
    huge = BASE_DOMAIN.replace("<os>", "<memoryBacking><hugepages/></memoryBacking><os>")
    root = etree.fromstring(d.rewrite(huge, d.parse_vmi(vmi(vhu("net1"))), SOCK))
    assert root.find("memoryBacking/source") is None
    assert root.find("memoryBacking/access").get("mode") == "shared"


@pytest.mark.parametrize(
    ("xml", "vmi_json", "socks", "message"),
    [
        ("<domain", vmi(vhu("net1")), SOCK, "does not parse"),
        ("<vm/>", vmi(vhu("net1")), SOCK, "not <domain>"),
        (BASE_DOMAIN, b"{not json", SOCK, "not valid JSON"),
        (BASE_DOMAIN, b"[1]", SOCK, "not a JSON object"),
        (BASE_DOMAIN, vmi(vhu("net1")), {}, "no vhost-user socket known"),
        (BASE_DOMAIN, vmi(vhu("net1")), {"net1": d.Socket("/" + "x" * 120)}, "121 bytes long"),
        (BASE_DOMAIN, vmi(vhu("net1", pciAddress="zz:1")), SOCK, "pciAddress"),
        (BASE_DOMAIN, vmi(vhu("net1"), cpu={"cores": 0}), SOCK, "positive integer"),
    ],
)
def test_bad_input_gives_clear_error(xml: str, vmi_json: bytes, socks: dict[str, d.Socket], message: str) -> None:
    with pytest.raises(d.BindingError, match=message):
        d.rewrite(xml, d.parse_vmi(vmi_json), socks)


# -- property: idempotent for any input, always one interface per bound VMI interface, always valid ----------------

NAMES = ["net1", "blue", "red-2"]
PCI = ["0000:02:00.0", "0000:03:00.0", "0000:04:00.0"]


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, bytes, dict[str, d.Socket], d.Options]:
    names = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=3))
    ifaces = []
    bound = []
    for i, n in enumerate(names):
        entry: dict[str, object] = {"name": n}
        binding = draw(st.sampled_from(["vhostuser", "vhostuser", "passt", None]))
        if binding:
            entry["binding"] = {"name": binding}
        if binding == "vhostuser":
            bound.append(n)
        if draw(st.booleans()):
            entry["macAddress"] = f"02:00:00:00:00:0{i}"
        if draw(st.booleans()):
            entry["pciAddress"] = PCI[i]
        if draw(st.booleans()):
            entry["acpiIndex"] = i + 1
        ifaces.append(entry)
    cpu = {k: draw(st.integers(1, 3)) for k in draw(st.sets(st.sampled_from(["sockets", "cores", "threads"])))}
    vmi_json = vmi(*ifaces, multiqueue=draw(st.booleans()), transitional=draw(st.booleans()), cpu=cpu)  # type: ignore[arg-type]
    xml = BASE_DOMAIN
    backing = draw(st.sampled_from(["", "<hugepages/>", "<access mode='shared'/>", "<source type='memfd'/>"]))
    if backing:
        xml = xml.replace("<os>", f"<memoryBacking>{backing}</memoryBacking>\n  <os>")
    if draw(st.booleans()):
        xml = xml.replace(
            "<devices>", "<vcpu>2</vcpu><cpu><numa><cell id='0' cpus='0-1' memory='262144'/></numa></cpu><devices>"
        )
    stale = [n for n in bound if draw(st.booleans())]
    for n in stale:  # what KubeVirt's lossy re-parse leaves of an earlier result
        xml = xml.replace(
            "</devices>",
            f"<interface type='vhostuser'><mac address='02:00:00:00:01:00'/><alias name='ua-{n}'/></interface></devices>",
        )
    if draw(st.booleans()):
        xml = xml.replace("<devices>", "<devices><!-- disks --><emulator>/usr/bin/qemu-system-x86_64</emulator>")
    socks = {n: d.Socket(f"/var/run/vhostplug-links/{n}/vhu.sock") for n in names}
    opts = d.Options(queue_size=draw(st.sampled_from(d.QUEUE_SIZES)))
    return xml, vmi_json, socks, opts


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_rewrite_is_idempotent(case: tuple[str, bytes, dict[str, d.Socket], d.Options]) -> None:
    xml, vmi_json, socks, opts = case
    v = d.parse_vmi(vmi_json)
    once = d.rewrite(xml, v, socks, opts)
    assert d.rewrite(once, v, socks, opts) == once
    bound = [
        i["name"]
        for i in json.loads(vmi_json)["spec"]["domain"]["devices"]["interfaces"]
        if i.get("binding", {}).get("name") == "vhostuser"
    ]
    for name in bound:
        (el,) = _iface(once, f"ua-{name}")
        assert el.find("source").get("path") == socks[name].path


@settings(max_examples=25, deadline=None)
@given(cases())
def test_rewrite_output_validates_against_libvirt_schema(
    case: tuple[str, bytes, dict[str, d.Socket], d.Options],
) -> None:
    xml, vmi_json, socks, opts = case
    out = d.rewrite(xml, d.parse_vmi(vmi_json), socks, opts)
    proc = validate(out)
    assert proc.returncode == 0, proc.stdout + proc.stderr + out.decode()
