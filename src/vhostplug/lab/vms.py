"""Lab VMs under libvirt: libvirtd/virtlogd started by hand, lab domains, lab-only QEMU overrides, OVS wiring, consoles.

Owns: :class:`Libvirt` (start the daemons when they are not running, define/start/destroy domains, and on ``stop``
remove every domain it defined and stop the daemons it started), :func:`lab_domain_xml` (a virt-launcher-like
domain booting the cached guest of ``scripts/build-guest.sh``), :func:`add_lab_overrides` (``vectors=0`` on
vhost-user devices: QEMU 7.2 under TCG crashes with vhost-user + MSI-X; never used outside the lab),
:class:`Console` (the serial log). Its OVSDB wiring is :mod:`vhostplug.lab.ovsdb`'s.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from vhostplug.lab.ovs import pid_alive

GUEST_DIR = Path(os.environ.get("VHOSTPLUG_GUEST_DIR", "/var/cache/vhostplug/guest"))
QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
QEMU_USER = "libvirt-qemu"
LIBVIRTD_PIDFILE = Path("/run/libvirtd.pid")
VIRTLOGD_PIDFILE = Path("/run/virtlogd.pid")


class LabVmError(RuntimeError):
    """A lab VM step failed; the message says which and why."""


@dataclass(frozen=True)
class Guest:
    """The lab guest: kernel + initramfs built by ``scripts/build-guest.sh``. The kernel is its uncompressed ELF
    (``vmlinux``, booted by QEMU through the kernel's PVH entry: no decompression under TCG, half the boot time here)
    when the build could make one, else the bzImage."""

    kernel: Path
    initrd: Path

    @classmethod
    def find(cls, folder: Path = GUEST_DIR) -> Guest:
        elf = Path(folder) / "vmlinux"
        g = cls(elf if elf.is_file() else Path(folder) / "vmlinuz", Path(folder) / "initrd.img")
        if not (g.kernel.is_file() and g.initrd.is_file()):
            raise LabVmError(f"no lab guest in {folder}: run scripts/build-guest.sh (make setup)")
        return g


def _pid_of(pidfile: Path, expect: str) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if expect.encode() in cmdline else None


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):  # a zombie counts as gone: PID 1 here does not reap
            return True
        time.sleep(0.05)
    return False


@dataclass
class Libvirt:
    """The system libvirtd (``qemu:///system``), started by hand when needed; ``stop`` undoes only what we did."""

    uri: str = "qemu:///system"
    started: list[str] = field(default_factory=list)
    defined: list[str] = field(default_factory=list)

    def virsh(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        proc = subprocess.run(
            ["virsh", "-q", "-c", self.uri, *args], capture_output=True, text=True, check=False, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise LabVmError(f"virsh {' '.join(args)} failed: {(proc.stderr or proc.stdout).strip()}")
        return proc.stdout

    def _alive(self) -> bool:
        try:
            proc = subprocess.run(
                ["virsh", "-c", self.uri, "version"], capture_output=True, text=True, check=False, timeout=10
            )
        except subprocess.TimeoutExpired:
            return False
        return proc.returncode == 0

    def start(self, timeout: float = 30) -> None:
        if _pid_of(VIRTLOGD_PIDFILE, "virtlogd") is None:
            subprocess.run(["virtlogd", "-d"], check=True, capture_output=True)
            self.started.append("virtlogd")
        if _pid_of(LIBVIRTD_PIDFILE, "libvirtd") is None:
            subprocess.run(["libvirtd", "-d"], check=True, capture_output=True)
            self.started.append("libvirtd")
        deadline = time.monotonic() + timeout
        while not self._alive():
            if time.monotonic() > deadline:
                raise LabVmError(f"libvirtd did not answer on {self.uri} within {timeout:.0f}s")
            time.sleep(0.2)

    def define(self, xml: bytes | str, folder: Path) -> str:
        data = xml.encode() if isinstance(xml, str) else xml
        name = str(etree.fromstring(data).findtext("name"))
        path = Path(folder) / f"{name}.xml"
        path.write_bytes(data)
        self.virsh("define", str(path))
        self.defined.append(name)
        return name

    def start_domain(self, name: str) -> None:
        self.virsh("start", name)

    def state(self, name: str) -> str:
        return self.virsh("domstate", name, check=False).strip()

    def wait_state(self, name: str, want: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while (got := self.state(name)) != want:
            if time.monotonic() > deadline:
                raise LabVmError(f"domain {name} is {got!r}, not {want!r} after {timeout:.0f}s")
            time.sleep(0.2)
        return got

    def remove(self, name: str) -> None:
        self.virsh("destroy", name, check=False)
        self.virsh("undefine", name, "--nvram", check=False)
        with contextlib.suppress(ValueError):
            self.defined.remove(name)

    def stop(self) -> list[str]:
        done = []
        for name in list(self.defined):
            self.remove(name)
            done.append(f"removed domain {name}")
        for daemon, pidfile in (("libvirtd", LIBVIRTD_PIDFILE), ("virtlogd", VIRTLOGD_PIDFILE)):
            if daemon not in self.started:
                continue
            pid = _pid_of(pidfile, daemon)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                if not _wait_gone(pid, 15):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    _wait_gone(pid, 5)
                done.append(f"stopped {daemon} (pid {pid})")
            self.started.remove(daemon)
        return done

    def __enter__(self) -> Libvirt:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


#: the lab guest's kernel command line before its vhp.* keys. no_timer_check: under TCG on a loaded host the guest's
#: IO-APIC timer check times out and the kernel panics ("IO-APIC + timer doesn't work!", "8254 timer not connected to
#: IO-APIC"); the check only guards broken hardware
GUEST_CMDLINE = "console=ttyS0 quiet panic=-1 no_timer_check"


def lab_domain_xml(
    name: str,
    console_log: Path,
    cmdline: str = "",
    guest: Guest | None = None,
    memory_mb: int = 256,
    vcpus: int = 1,
) -> str:
    """A virt-launcher-like domain (TCG, q35, no disks) booting the lab guest; the sidecar adds the interfaces."""
    guest = guest or Guest.find()
    full_cmdline = f"{GUEST_CMDLINE} {cmdline}".strip()
    root = etree.Element("domain", nsmap={"qemu": QEMU_NS}, type="qemu")
    etree.SubElement(root, "name").text = name
    etree.SubElement(root, "memory", unit="MiB").text = str(memory_mb)
    etree.SubElement(root, "vcpu").text = str(vcpus)
    os_el = etree.SubElement(root, "os")
    etree.SubElement(os_el, "type", arch="x86_64", machine="q35").text = "hvm"
    etree.SubElement(os_el, "kernel").text = str(guest.kernel)
    etree.SubElement(os_el, "initrd").text = str(guest.initrd)
    etree.SubElement(os_el, "cmdline").text = full_cmdline
    etree.SubElement(etree.SubElement(root, "features"), "acpi")
    etree.SubElement(root, "clock", offset="utc")
    for ev in ("on_poweroff", "on_reboot", "on_crash"):
        etree.SubElement(root, ev).text = "destroy"
    devices = etree.SubElement(root, "devices")
    etree.SubElement(devices, "emulator").text = "/usr/bin/qemu-system-x86_64"
    serial = etree.SubElement(devices, "serial", type="file")
    etree.SubElement(serial, "source", path=str(console_log))
    etree.SubElement(serial, "target", port="0")
    etree.SubElement(devices, "memballoon", model="none")
    etree.indent(root, space="  ")
    return etree.tostring(root, encoding="unicode")


def add_lab_overrides(domain_xml: bytes | str) -> bytes:
    """Lab only: ``<qemu:override>`` setting ``vectors=0`` on every vhost-user interface (QEMU 7.2 TCG + MSI-X crash).

    An interface's ``<mtu size>`` goes to QEMU as the virtio-net ``host_mtu`` property instead: Debian 12's libvirt
    9.0 refuses ``<mtu>`` on a vhostuser interface ("Cannot set interface MTU on ''"), newer libvirt (KubeVirt's)
    turns it into that same property."""
    data = domain_xml.encode() if isinstance(domain_xml, str) else domain_xml
    root = etree.fromstring(data)
    mtus: dict[str, str] = {}
    for iface in root.iterfind("devices/interface[@type='vhostuser']"):
        alias_el, mtu = iface.find("alias"), iface.find("mtu")
        if alias_el is not None and mtu is not None and alias_el.get("name") and mtu.get("size"):
            mtus[str(alias_el.get("name"))] = str(mtu.get("size"))
            iface.remove(mtu)
    aliases = [
        str(a.get("name"))
        for a in root.iterfind("devices/interface[@type='vhostuser']/alias")
        if a.get("name") is not None
    ]
    q = f"{{{QEMU_NS}}}"
    if root.nsmap.get("qemu") != QEMU_NS:
        raise LabVmError("the domain must declare xmlns:qemu to take a qemu:override")
    override = root.find(f"{q}override")
    if override is None:
        override = etree.SubElement(root, f"{q}override")
    for alias in aliases:
        if override.xpath(f"q:device[@alias='{alias}']", namespaces={"q": QEMU_NS}):
            continue
        dev = etree.SubElement(override, f"{q}device", alias=alias)
        front = etree.SubElement(dev, f"{q}frontend")
        etree.SubElement(front, f"{q}property", name="vectors", type="unsigned", value="0")
        if alias in mtus:
            etree.SubElement(front, f"{q}property", name="host_mtu", type="unsigned", value=mtus[alias])
    out: bytes = etree.tostring(root, encoding="utf-8")
    return out


def prepare_socket_dir(path: Path, user: str = QEMU_USER) -> Path:
    """A device folder QEMU (running as ``user``) can create its server socket in; parents made traversable."""
    import pwd

    pw = pwd.getpwnam(user)
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    os.chmod(path, 0o770)
    for parent in path.parents:
        if parent == Path("/"):
            break
        st = parent.stat()
        if st.st_uid == 0 and not st.st_mode & 0o001:
            os.chmod(parent, st.st_mode | 0o011)  # search only, for the QEMU user
    return path


@dataclass
class Console:
    """The guest's serial console log (written by QEMU through a ``<serial type='file'>``)."""

    path: Path

    def text(self) -> str:
        try:
            return self.path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.text())
            if m:
                return m
            if time.monotonic() > deadline:
                tail = "\n".join(self.text().splitlines()[-15:])
                raise LabVmError(f"{pattern!r} not on console {self.path} after {timeout:.0f}s; tail:\n{tail}")
            time.sleep(0.2)
