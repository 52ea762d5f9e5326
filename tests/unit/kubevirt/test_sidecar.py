"""The sidecar as KubeVirt sees it: `vhostplug kubevirt-sidecar` in a subprocess, called over its unix socket."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from lxml import etree

from tests.conftest import REPO
from tests.unit.kubevirt.xmlcase import BASE_DOMAIN, validate, vhu, vmi
from vhostplug.kubevirt.hooks import (
    info_pb2,
    info_pb2_grpc,
    v1alpha2_pb2,
    v1alpha2_pb2_grpc,
    v1alpha3_pb2,
    v1alpha3_pb2_grpc,
)
from vhostplug.kubevirt.sidecar import read_network_info
from vhostplug.podinfo import devicemetadata as dm

VHOSTPLUG = REPO / ".venv" / "bin" / "vhostplug"


def network_info(**paths: str) -> str:
    return json.dumps(
        {
            "interfaces": [
                {
                    "network": net,
                    "deviceInfo": {
                        "type": "vhost-user",
                        "version": "1.1.0",
                        "vhost-user": {"mode": "server", "path": p},
                    },
                }
                for net, p in paths.items()
            ]
        }
    )


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    sock: Path
    info: Path
    links: Path
    dra: Path
    log: Path
    channel: grpc.Channel

    def info_stub(self) -> info_pb2_grpc.InfoStub:
        return info_pb2_grpc.InfoStub(self.channel)

    def v3(self) -> v1alpha3_pb2_grpc.CallbacksStub:
        return v1alpha3_pb2_grpc.CallbacksStub(self.channel)

    def v2(self) -> v1alpha2_pb2_grpc.CallbacksStub:
        return v1alpha2_pb2_grpc.CallbacksStub(self.channel)


@contextlib.contextmanager
def run_sidecar(folder: Path, wait_timeout: float) -> Iterator[Running]:
    """`vhostplug kubevirt-sidecar` serving in ``folder``, its log in ``folder/sidecar.log``; stopped by SIGTERM."""
    sock = folder / "hooks" / "vhu.sock"
    info = folder / "network-info"
    info.write_text("")  # the downward API file starts empty
    log = folder / "sidecar.log"
    env = dict(os.environ, NETWORK_BINDING_PLUGIN_NAME="vhostuser", CONTAINER_NAME="hook-sidecar-0")
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            [
                str(VHOSTPLUG),
                "kubevirt-sidecar",
                "--socket",
                str(sock),
                "--network-info",
                str(info),
                "--links-dir",
                str(folder / "links"),
                "--wait-timeout",
                str(wait_timeout),
                "--dra-metadata-dir",
                str(folder / "dra"),
            ],
            env=env,
            stderr=log_file,
        )
    deadline = time.monotonic() + 20
    while not sock.is_socket():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "sidecar socket never appeared"
        time.sleep(0.05)
    channel = grpc.insecure_channel(f"unix:{sock}")
    # the socket file appears when gRPC binds it, a moment before the server listens: wait until it answers
    grpc.channel_ready_future(channel).result(timeout=max(1.0, deadline - time.monotonic()))
    try:
        yield Running(proc, sock, info, folder / "links", folder / "dra", log, channel)
    finally:
        channel.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# A sidecar that is waited on for device info gives up after --wait-timeout. The tests of what it does with the
# info it finds (or of the error when it finds none) share one that gives up soon; the tests of the wait itself
# start their own with a timeout well beyond their writer's delay.
SHORT_WAIT = 0.5
LONG_WAIT = 5.0


@pytest.fixture(scope="module")
def shared_sidecar() -> Iterator[Running]:
    folder = Path(tempfile.mkdtemp(prefix="vhp-sc-", dir="/tmp"))
    try:
        with run_sidecar(folder, SHORT_WAIT) as running:
            yield running
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def sidecar(shared_sidecar: Running) -> Iterator[Running]:
    """The module's sidecar, as a test finds a fresh one: empty network-info, no DRA metadata, no links."""
    s = shared_sidecar
    assert s.proc.poll() is None, s.log.read_text()
    s.info.write_text("")
    yield s
    # the test leaves it serving, and its files are removed for the next
    assert s.proc.poll() is None, s.log.read_text()
    assert s.info_stub().Info(info_pb2.InfoParams(), timeout=5.0).name == "vhostuser-network-binding"
    s.info.write_text("")
    shutil.rmtree(s.dra, ignore_errors=True)
    shutil.rmtree(s.links, ignore_errors=True)


@pytest.fixture
def own_sidecar(short_dir: Path) -> Iterator[Running]:
    """A sidecar of the test's own: for a test that stops it, or waits on it for device info."""
    with run_sidecar(short_dir, LONG_WAIT) as running:
        yield running


def test_info_answers_fast(sidecar: Running) -> None:
    started = time.monotonic()
    res = sidecar.info_stub().Info(info_pb2.InfoParams(), timeout=1.0)
    elapsed = time.monotonic() - started
    assert elapsed < 0.5, elapsed
    assert res.name == "vhostuser-network-binding"
    assert list(res.versions) == ["v1alpha3", "v1alpha2"]
    assert {h.name for h in res.hookPoints} == {"OnDefineDomain", "Shutdown"}


def test_define_domain_v1alpha3_links_and_shutdown(own_sidecar: Running, short_dir: Path) -> None:
    sidecar = own_sidecar
    dev = short_dir / "dev-07"
    dev.mkdir()
    sidecar.info.write_text(network_info(net1=f"{dev}/vhu.sock"))
    req = v1alpha3_pb2.OnDefineDomainParams(domainXML=BASE_DOMAIN.encode(), vmi=vmi(vhu("net1")))
    out = sidecar.v3().OnDefineDomain(req, timeout=10).domainXML
    (el,) = etree.fromstring(out).xpath("//interface[alias/@name='ua-net1']")
    stable = el.find("source").get("path")
    assert stable == f"{sidecar.links}/net1/vhu.sock"
    link = sidecar.links / "net1"
    assert link.is_symlink() and os.readlink(link) == str(dev)
    assert validate(out).returncode == 0
    # called again with its own output (KubeVirt calls it several times): same answer
    again = sidecar.v3().OnDefineDomain(v1alpha3_pb2.OnDefineDomainParams(domainXML=out, vmi=req.vmi), timeout=10)
    assert again.domainXML == out
    sidecar.v3().Shutdown(v1alpha3_pb2.ShutdownParams(), timeout=5)
    assert not link.exists() and not link.is_symlink()
    assert sidecar.proc.wait(10) == 0  # the sidecar exits after Shutdown so the pod can complete
    assert not sidecar.sock.exists()


def test_define_domain_v1alpha2_waits_for_device_info(own_sidecar: Running, short_dir: Path) -> None:
    sidecar = own_sidecar
    dev = short_dir / "dev-1"
    timer = threading.Timer(0.6, lambda: sidecar.info.write_text(network_info(blue=f"{dev}/vhu.sock")))
    timer.start()
    try:
        started = time.monotonic()
        req = v1alpha2_pb2.OnDefineDomainParams(domainXML=BASE_DOMAIN.encode(), vmi=vmi(vhu("blue")))
        out = sidecar.v2().OnDefineDomain(req, timeout=10).domainXML
    finally:
        timer.cancel()
    assert time.monotonic() - started >= 0.5
    assert f"{sidecar.links}/blue/vhu.sock".encode() in out


@pytest.mark.parametrize(
    ("info", "xml", "vmi_json", "code", "words"),
    [
        ("", BASE_DOMAIN.encode(), vmi(vhu("net1")), grpc.StatusCode.FAILED_PRECONDITION, "no vhost-user device"),
        ("{bad", BASE_DOMAIN.encode(), vmi(vhu("net1")), grpc.StatusCode.INVALID_ARGUMENT, "not valid JSON"),
        (
            network_info(net1="/tmp/d/vhu.sock"),
            b"<domain",
            vmi(vhu("net1")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "does not parse",
        ),
        (network_info(net1="/tmp/d/vhu.sock"), BASE_DOMAIN.encode(), b"nope", grpc.StatusCode.INVALID_ARGUMENT, "VMI"),
        (
            network_info(**{"n" * 100: "/tmp/d/vhu.sock"}),
            BASE_DOMAIN.encode(),
            vmi(vhu("n" * 100)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "at most 107",
        ),
    ],
)
def test_errors_are_grpc_statuses_and_server_survives(
    sidecar: Running, info: str, xml: bytes, vmi_json: bytes, code: grpc.StatusCode, words: str
) -> None:
    sidecar.info.write_text(info)
    with pytest.raises(grpc.RpcError) as err:
        sidecar.v3().OnDefineDomain(v1alpha3_pb2.OnDefineDomainParams(domainXML=xml, vmi=vmi_json), timeout=10)
    assert err.value.code() == code
    assert words in (err.value.details() or "")
    assert "vhostuser network binding" in (err.value.details() or "")
    assert sidecar.info_stub().Info(info_pb2.InfoParams(), timeout=1.0).name == "vhostuser-network-binding"
    assert sidecar.proc.poll() is None


def test_vmi_without_our_binding_is_returned_unchanged(sidecar: Running) -> None:
    req = v1alpha3_pb2.OnDefineDomainParams(domainXML=BASE_DOMAIN.encode(), vmi=vmi({"name": "x", "bridge": {}}))
    out = sidecar.v3().OnDefineDomain(req, timeout=5).domainXML
    assert etree.fromstring(out).find("memoryBacking") is None
    assert b"vhostuser" not in out


def test_read_network_info_tolerates_partial_entries(tmp_path: Path) -> None:
    f = tmp_path / "ni"
    f.write_text(json.dumps({"interfaces": [{"network": "a"}, {"network": "b", "deviceInfo": {"type": "pci"}}]}))
    assert read_network_info(f) == {}
    assert read_network_info(tmp_path / "missing") == {}


def dra_vmi(claims: dict[str, tuple[str, str]], pod_claims: list[dict[str, str]], *plain: str) -> bytes:
    """A VMI whose networks in ``claims`` are resourceClaims (KubeVirt's DRA networks), the others Multus ones."""
    obj = json.loads(vmi(*(vhu(n) for n in [*claims, *plain])))
    obj["spec"]["networks"] = [
        {"name": n, "resourceClaim": {"claimName": c, "requestName": r}} for n, (c, r) in claims.items()
    ] + [{"name": n, "multus": {"networkName": f"ns/{n}"}} for n in plain]
    obj["spec"]["resourceClaims"] = pod_claims
    return json.dumps(obj).encode()


def write_metadata(root: Path, rel: str, socket_path: str, mtu: int = 9000, content: str | None = None) -> Path:
    f = root / rel
    f.parent.mkdir(parents=True, exist_ok=True)
    if content is None:
        attrs = dm.vhost_user_attributes(socket_path, mtu)
        content = dm.encode(
            dm.Metadata(
                "vms", "claim-x", "uid-1", 1, "vhu-net", {"vhu": [dm.Device(dm.VHOSTPLUG_DRIVER, "n", "d0", attrs)]}
            )
        )
    f.write_text(content)
    return f


def test_dra_network_from_template_claim_metadata(sidecar: Running, short_dir: Path) -> None:
    """A network that is a resourceClaim (made from a template) gets its socket and MTU from our driver's KEP-5304
    metadata, at the path the KEP gives for the pod's claim name, beside a network-info network."""
    dra_dev = short_dir / "dra-dev"
    dra_dev.mkdir()
    plain_dev = short_dir / "dev-2"
    write_metadata(
        sidecar.dra,
        f"resourceclaimtemplates/vhu-net/vhu/{dm.VHOSTPLUG_DRIVER}-metadata.json",
        f"{dra_dev}/vhu.sock",
    )
    sidecar.info.write_text(network_info(plain=f"{plain_dev}/vhu.sock"))
    the_vmi = dra_vmi(
        {"net1": ("vhu-net", "vhu")}, [{"name": "vhu-net", "resourceClaimTemplateName": "vhu-tmpl"}], "plain"
    )
    out = (
        sidecar.v3()
        .OnDefineDomain(v1alpha3_pb2.OnDefineDomainParams(domainXML=BASE_DOMAIN.encode(), vmi=the_vmi), timeout=10)
        .domainXML
    )
    (el,) = etree.fromstring(out).xpath("//interface[alias/@name='ua-net1']")
    # the claim's container path is stable across virt-launchers already: QEMU takes it as it is, no link
    assert el.find("source").get("path") == f"{dra_dev}/vhu.sock"
    assert el.find("source").get("mode") == "server"
    assert el.find("mtu").get("size") == "9000"
    assert not (sidecar.links / "net1").is_symlink()
    (plain,) = etree.fromstring(out).xpath("//interface[alias/@name='ua-plain']")
    assert plain.find("mtu") is None and os.readlink(sidecar.links / "plain") == str(plain_dev)
    assert validate(out).returncode == 0, validate(out).stderr


def test_dra_direct_claim_waits_for_deferred_metadata(own_sidecar: Running, short_dir: Path) -> None:
    """A claim the pod names directly is found under resourceclaims/<its name>; an empty file (metadata a driver
    writes later) is waited for, not an error."""
    sidecar = own_sidecar
    rel = f"resourceclaims/shared-vhu/vhu/{dm.VHOSTPLUG_DRIVER}-metadata.json"
    f = write_metadata(sidecar.dra, rel, "", content="")
    dev = short_dir / "dra-dev"
    timer = threading.Timer(0.6, lambda: write_metadata(sidecar.dra, rel, f"{dev}/vhu.sock", mtu=1500))
    timer.start()
    try:
        the_vmi = dra_vmi({"net1": ("vhu-net", "vhu")}, [{"name": "vhu-net", "resourceClaimName": "shared-vhu"}])
        out = (
            sidecar.v3()
            .OnDefineDomain(v1alpha3_pb2.OnDefineDomainParams(domainXML=BASE_DOMAIN.encode(), vmi=the_vmi), timeout=10)
            .domainXML
        )
    finally:
        timer.cancel()
    assert f.stat().st_size > 0
    (el,) = etree.fromstring(out).xpath("//interface[alias/@name='ua-net1']")
    assert el.find("mtu").get("size") == "1500" and el.find("source").get("path") == f"{dev}/vhu.sock"


@pytest.mark.parametrize(
    ("content", "code", "words"),
    [
        (None, grpc.StatusCode.FAILED_PRECONDITION, "no DRA device metadata at"),
        (
            '{"apiVersion": "metadata.resource.k8s.io/v1alpha1", "kind": "DeviceMetadata", "requests": [{"name": "vhu", '
            '"devices": [{"driver": "vhostuser.vhostplug.io", "name": "d", "attributes": {"vhost-user-path": '
            '{"string": "/s/vhu.sock"}}}]}]}',
            grpc.StatusCode.INVALID_ARGUMENT,
            "no mtu attribute",
        ),
        ("{nope", grpc.StatusCode.INVALID_ARGUMENT, "not a stream of JSON"),
    ],
)
def test_dra_metadata_faults_are_grpc_statuses(
    sidecar: Running, short_dir: Path, content: str | None, code: grpc.StatusCode, words: str
) -> None:
    if content is not None:
        write_metadata(
            sidecar.dra,
            f"resourceclaimtemplates/vhu-net/vhu/{dm.VHOSTPLUG_DRIVER}-metadata.json",
            "",
            content=content,
        )
    the_vmi = dra_vmi({"net1": ("vhu-net", "vhu")}, [{"name": "vhu-net", "resourceClaimTemplateName": "t"}])
    with pytest.raises(grpc.RpcError) as err:
        sidecar.v3().OnDefineDomain(v1alpha3_pb2.OnDefineDomainParams(domainXML=BASE_DOMAIN.encode(), vmi=the_vmi))
    assert err.value.code() == code and words in (err.value.details() or "")
    assert "network net1" in (err.value.details() or "")
    assert sidecar.proc.poll() is None
