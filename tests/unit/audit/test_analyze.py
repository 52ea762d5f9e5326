"""Audit rules on hand-made ports, domains, files and identities (no OVS, no libvirt)."""

from __future__ import annotations

import stat

import pytest

from vhostplug.audit.access import FileInfo, Principal, can_connect
from vhostplug.audit.analyze import Severity, analyze
from vhostplug.audit.domains import VhostConsumer
from vhostplug.audit.ovs import OvsVhostPort, vhost_sock_dir

QEMU = Principal("libvirt-qemu", 64055, frozenset({64055, 107}))
OVS_ROOT = Principal("ovs-vswitchd", 0, frozenset({0}))
OVS_USER = Principal("openvswitch", 990, frozenset({990, 42477}))


def sock(path: str, uid: int = 0, gid: int = 0, mode: int = 0o775) -> FileInfo:
    return FileInfo(path, True, True, uid, gid, stat.S_IFSOCK | mode)


def missing(path: str) -> FileInfo:
    return FileInfo(path, False)


def port(name: str, kind: str, path: str, **kw: object) -> OvsVhostPort:
    return OvsVhostPort(name=name, bridge="br-int", ovs_type=kind, socket_path=path, **kw)  # type: ignore[arg-type]


def vm(path: str, mode: str, running: bool = False, domain: str = "vm1") -> VhostConsumer:
    return VhostConsumer(domain=domain, running=running, persistent=True, mac="02:00:00:00:00:01", path=path,
                         mode=mode, alias="net0")  # fmt: skip


def codes(report: object, severity: Severity | None = None) -> set[str]:
    return {f.code for f in report.findings if severity is None or f.severity is severity}  # type: ignore[attr-defined]


def test_client_mode_vm_on_deprecated_port_joined() -> None:
    p = "/run/ovs/vhost/vhu1"
    r = analyze([port("vhu1", "dpdkvhostuser", p)], [vm(p, "client")], QEMU, OVS_ROOT,
                stat_fn=lambda _: sock(p, 0, 64055, 0o775))  # fmt: skip
    assert len(r.rows) == 1 and r.rows[0].port is not None and r.rows[0].consumers[0].domain == "vm1"
    assert codes(r) == {"deprecated-port"}
    assert r.errors == []


def test_mode_mismatch_both_ways() -> None:
    p = "/s/vhu1"
    r = analyze([port("vhu1", "dpdkvhostuser", p)], [vm(p, "server")], QEMU, OVS_ROOT, stat_fn=lambda _: sock(p))
    assert "mode-mismatch" in codes(r, Severity.ERROR)
    r = analyze([port("vhu1", "dpdkvhostuserclient", p)], [vm(p, "client")], QEMU, OVS_ROOT, stat_fn=lambda _: sock(p))
    msg = next(f.message for f in r.findings if f.code == "mode-mismatch")
    assert "needs QEMU mode='server'" in msg
    r = analyze([port("vhu1", "dpdkvhostuserclient", p)], [vm(p, "server")], QEMU, OVS_ROOT,
                stat_fn=lambda _: sock(p, 64055, 64055))  # fmt: skip
    assert "mode-mismatch" not in codes(r)


def test_missing_socket_depends_on_who_creates_it() -> None:
    p = "/s/vhu1"
    # OVS should have made it
    r = analyze([port("vhu1", "dpdkvhostuser", p)], [vm(p, "client")], QEMU, OVS_ROOT, stat_fn=missing)
    assert "socket-missing" in codes(r, Severity.ERROR)
    # QEMU makes it when the VM starts: stopped is fine, running is not
    r = analyze([port("vhu1", "dpdkvhostuserclient", p)], [vm(p, "server")], QEMU, OVS_ROOT, stat_fn=missing)
    assert "socket-missing" in codes(r, Severity.INFO) and r.errors == []
    r = analyze([port("vhu1", "dpdkvhostuserclient", p)], [vm(p, "server", True)], QEMU, OVS_ROOT, stat_fn=missing)
    assert "socket-missing" in codes(r, Severity.ERROR)


def test_path_too_long_and_not_a_socket() -> None:
    p = "/" + "d" * 110
    r = analyze([port("vhu1", "dpdkvhostuserclient", p)], [], QEMU, OVS_ROOT, stat_fn=missing)
    assert "path-too-long" in codes(r, Severity.ERROR)
    r = analyze([port("vhu1", "dpdkvhostuser", "/s/x")], [vm("/s/x", "client")], QEMU, OVS_ROOT,
                stat_fn=lambda q: FileInfo(q, True, False, 0, 0, stat.S_IFREG | 0o644))  # fmt: skip
    assert "not-a-socket" in codes(r, Severity.ERROR)


def test_no_consumer_and_no_port() -> None:
    r = analyze(
        [port("vhu1", "dpdkvhostuserclient", "/s/a"),
         port("vhu2", "dpdkvhostuserclient", "/s/b", external_ids={"vhostplug-attachment": "cid/net1"})],
        [vm("/s/c", "server", running=True), vm("/s/d", "client", domain="vm2")],
        QEMU, OVS_ROOT, stat_fn=missing,
    )  # fmt: skip
    by_subject = {(f.subject, f.code): f.severity for f in r.findings}
    assert by_subject[("/s/a", "no-consumer")] is Severity.WARNING
    assert by_subject[("/s/b", "no-consumer")] is Severity.INFO
    assert by_subject[("/s/c", "no-port")] is Severity.ERROR
    assert by_subject[("/s/d", "no-port")] is Severity.WARNING


def test_permissions_and_shared_group() -> None:
    p = "/run/openvswitch/vhu1"
    # dpdkvhostuser socket root:root 0755: QEMU (client) cannot connect
    r = analyze([port("vhu1", "dpdkvhostuser", p)], [vm(p, "client")], QEMU, OVS_ROOT,
                stat_fn=lambda _: sock(p, 0, 0, 0o755))  # fmt: skip
    assert {"no-access", "group-not-shared"} <= codes(r)
    # TripleO layout: qemu:hugetlbfs srwxrwxr-x with OVS openvswitch:hugetlbfs -> fine
    hugetlbfs = 42477
    qemu = Principal("qemu", 107, frozenset({107, hugetlbfs}))
    r = analyze([port("vhu1", "dpdkvhostuserclient", p)], [vm(p, "server")], qemu, OVS_USER,
                stat_fn=lambda _: sock(p, 107, hugetlbfs, 0o775))  # fmt: skip
    assert codes(r) == set()
    # same, but the group is QEMU's own: OVS (not root) cannot connect
    r = analyze([port("vhu1", "dpdkvhostuserclient", p)], [vm(p, "server")], qemu, OVS_USER,
                stat_fn=lambda _: sock(p, 107, 107, 0o775))  # fmt: skip
    assert {"no-access", "group-not-shared"} <= codes(r, Severity.ERROR) | codes(r, Severity.WARNING)


def test_not_connected_and_ovs_error_and_shared_socket() -> None:
    p = "/s/a"
    r = analyze(
        [port("vhu1", "dpdkvhostuserclient", p, status={"vhost-user-status": "disconnected"}, error="could not open")],
        [vm(p, "server", True), vm(p, "server", True, domain="vm2")],
        QEMU, OVS_ROOT, stat_fn=lambda _: sock(p, 0, 0, 0o777),
    )  # fmt: skip
    assert {"not-connected", "ovs-error", "shared-socket"} <= codes(r)


@pytest.mark.parametrize(
    ("uid", "gid", "mode", "who", "ok"),
    [
        (0, 0, 0o755, QEMU, False),
        (0, 0, 0o757, QEMU, True),
        (0, 107, 0o775, QEMU, True),
        (64055, 0, 0o200, QEMU, True),
        (64055, 107, 0o577, QEMU, False),  # owner without write: the owner class decides
        (5, 5, 0o000, OVS_ROOT, True),
    ],
)
def test_can_connect(uid: int, gid: int, mode: int, who: Principal, ok: bool) -> None:
    assert can_connect(who, sock("/x", uid, gid, mode)) is ok


@pytest.mark.parametrize(
    ("rundir", "sub", "expected"),
    [("/var/run/openvswitch", None, "/var/run/openvswitch"), ("/tmp/ovs", "vhost", "/tmp/ovs/vhost"),
     ("/tmp/ovs/", "a/b/", "/tmp/ovs/a/b"), ("/run/ovs", "/abs", "/run/ovs/abs")],
)  # fmt: skip
def test_vhost_sock_dir_is_under_rundir(rundir: str, sub: str | None, expected: str) -> None:
    assert vhost_sock_dir(rundir, sub) == expected


def test_report_json_shape() -> None:
    p = "/s/a"
    r = analyze([port("vhu1", "dpdkvhostuser", p)], [vm(p, "client")], QEMU, OVS_ROOT, stat_fn=lambda _: sock(p))
    data = r.to_json()
    assert data["rows"][0]["port"]["type"] == "dpdkvhostuser"
    assert data["rows"][0]["consumers"][0]["mode"] == "client"
    assert data["summary"]["warning"] >= 1
