"""Container and sandbox IDs from mountinfo and cgroup texts as docker, containerd and CRI-O leave them."""

from __future__ import annotations

from pathlib import Path

from vhostplug.podinfo.containerid import candidate_ids, ids_from_cgroup, ids_from_mountinfo

SANDBOX = "a" * 63 + "1"
APP = "b" * 63 + "2"

DOCKER = f"""\
1021 1000 0:52 / / rw,relatime master:1 - overlay overlay rw,lowerdir=/x
1040 1021 8:1 /var/lib/docker/containers/{APP}/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/sda1 rw
1041 1021 8:1 /var/lib/docker/containers/{SANDBOX}/hostname /etc/hostname rw,relatime - ext4 /dev/sda1 rw
1042 1021 8:1 /var/lib/docker/containers/{APP}/hosts /etc/hosts rw,relatime - ext4 /dev/sda1 rw
"""

CONTAINERD = f"""\
2001 2000 0:60 / / rw - overlay overlay rw
2010 2001 253:0 /var/lib/kubelet/pods/1234/etc-hosts /etc/hosts rw - xfs /dev/vda1 rw
2011 2001 253:0 /var/lib/containerd/io.containerd.grpc.v1.cri/containers/{APP}/termination-log /dev/termination-log rw - xfs /dev/vda1 rw
2012 2001 0:30 /containerd/io.containerd.grpc.v1.cri/sandboxes/{SANDBOX}/hostname /etc/hostname rw - tmpfs tmpfs rw
2013 2001 0:30 /containerd/io.containerd.grpc.v1.cri/sandboxes/{SANDBOX}/resolv.conf /etc/resolv.conf rw - tmpfs tmpfs rw
"""

CRIO = f"""\
3001 3000 0:70 / / rw - overlay overlay rw
3012 3001 0:25 /containers/storage/overlay-containers/{SANDBOX}/userdata/hostname /etc/hostname rw - tmpfs tmpfs rw
3013 3001 0:25 /containers/storage/overlay-containers/{APP}/userdata/run/secrets /run/secrets rw - tmpfs tmpfs rw
"""

# kuryr's documented case: /var/lib/docker as its own mount, the root field starts at /containers/
KURYR_DOC = f"""\
511 500 8:17 /containers/{SANDBOX}/hostname /etc/hostname rw,relatime - ext4 /dev/sdb1 rw
"""


def test_docker_sandbox_hostname_first() -> None:
    assert ids_from_mountinfo(DOCKER) == [SANDBOX, APP]


def test_containerd_sandbox_then_container() -> None:
    assert ids_from_mountinfo(CONTAINERD) == [SANDBOX, APP]


def test_crio_userdata_hostname() -> None:
    assert ids_from_mountinfo(CRIO) == [SANDBOX, APP]


def test_kuryr_documented_layout() -> None:
    assert ids_from_mountinfo(KURYR_DOC) == [SANDBOX]


def test_mountinfo_octal_escapes_are_decoded() -> None:
    text = f"1 0 8:1 /var/lib/my\\040docker/containers/{SANDBOX}/hostname /etc/hostname rw - ext4 /dev/sda1 rw\n"
    assert ids_from_mountinfo(text) == [SANDBOX]


def test_no_ids_in_plain_host_mountinfo() -> None:
    assert ids_from_mountinfo("22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\nshort line\n") == []


def test_cgroup_v2_and_v1() -> None:
    v2 = f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice/cri-containerd-{APP}.scope\n"
    v1 = f"12:memory:/kubepods/besteffort/pod12/{APP}\n11:cpu:/docker/{APP}\n"
    crio = f"0::/kubepods.slice/crio-{APP}.scope\n"
    assert ids_from_cgroup(v2) == [APP]
    assert ids_from_cgroup(v1) == [APP]
    assert ids_from_cgroup(crio) == [APP]
    assert ids_from_cgroup("0::/user.slice/user-0.slice/session-1.scope\n") == []


def test_candidate_ids_reads_under_root(tmp_path: Path) -> None:
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text(CONTAINERD)
    (tmp_path / "proc/self/cgroup").write_text(f"0::/kubepods/cri-containerd-{'c' * 64}.scope\n")
    ids, looked = candidate_ids(tmp_path)
    assert ids == [SANDBOX, APP, "c" * 64]
    assert looked == [str(tmp_path / "proc/self/mountinfo"), str(tmp_path / "proc/self/cgroup")]
