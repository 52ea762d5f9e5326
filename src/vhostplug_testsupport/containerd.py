"""A private containerd (Debian's 1.6, CRI plugin, runc) for tests and benchmarks, and the busybox sandbox image.

Everything lives in one temporary folder: root, state, gRPC socket, config, CNI bin and conf folders, host-local's
data. Nothing touches the system's /var/lib/containerd or /etc/cni. What containerd itself puts outside that folder
(the sandbox network namespaces under /var/run/netns, the shims' sockets under /run/containerd/s) is removed by
RemovePodSandbox and checked by :meth:`Containerd.leftovers`.

Facts of this machine the config carries: root lacks CAP_SYS_RESOURCE (``restrict_oom_score_adj``); containerd 1.6
ignores file CREATE events in the CNI conf folder (:meth:`Containerd.write_conflist` writes a temporary name in that
folder and renames it); PID 1 does not reap orphans, so a finished shim may stay a zombie (ignored by the checks).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vhostplug_testsupport.cri import CriClient

CONTAINERD = "containerd"
CTR = "ctr"
NAMESPACE = "k8s.io"  # the CRI plugin's containerd namespace
PAUSE_IMAGE = "vhostplug.test/pause:busybox"
BUSYBOX = Path("/bin/busybox")
DEBIAN_CNI = Path("/usr/lib/cni")


class ContainerdError(RuntimeError):
    """containerd did not start or a ctr command failed; the message carries the log tail."""


def _tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def build_pause_image(dest: Path, name: str = PAUSE_IMAGE) -> Path:
    """Write an OCI image archive (``ctr images import`` reads it) of a sandbox image made from busybox-static:
    /bin/busybox plus /bin/sleep, its entry point ``sleep infinity``. Deterministic: same bytes every run."""
    if not BUSYBOX.exists():
        raise ContainerdError(f"{BUSYBOX} is missing: install Debian's busybox-static (`make setup`)")
    members: list[tuple[tarfile.TarInfo, bytes | None]] = []
    for d in ("bin", "dev", "etc", "proc", "sys", "tmp"):
        info = tarfile.TarInfo(d)
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        members.append((info, None))
    body = BUSYBOX.read_bytes()
    info = tarfile.TarInfo("bin/busybox")
    info.mode, info.size = 0o755, len(body)
    members.append((info, body))
    for applet in ("sleep", "sh"):
        link = tarfile.TarInfo(f"bin/{applet}")
        link.type, link.linkname = tarfile.SYMTYPE, "busybox"
        members.append((link, None))
    layer = _tar_bytes(members)
    layer_gz = gzip.compress(layer, mtime=0)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/bin/sleep", "infinity"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
    }
    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return digest

    config_bytes = json.dumps(config, sort_keys=True).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": blob(config_bytes),
            "size": len(config_bytes),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": blob(layer_gz),
                "size": len(layer_gz),
            }
        ],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": blob(manifest_bytes),
                "size": len(manifest_bytes),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name},
            }
        ],
    }
    files: list[tuple[tarfile.TarInfo, bytes | None]] = []
    for path, data in [
        ("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
        ("index.json", json.dumps(index, sort_keys=True).encode()),
        *((f"blobs/sha256/{d.split(':', 1)[1]}", b) for d, b in sorted(blobs.items())),
    ]:
        info = tarfile.TarInfo(path)
        info.mode, info.size = 0o644, len(data)
        files.append((info, data))
    dest.write_bytes(_tar_bytes(files))
    return dest


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


class Containerd:
    """One private containerd with the CRI plugin. ``start``/``stop``/``restart``; ``cri`` talks CRI v1 to it."""

    def __init__(self, root: Path, sandbox_image: str = PAUSE_IMAGE) -> None:
        self.dir = Path(root)
        self.sandbox_image = sandbox_image
        self.proc: subprocess.Popen[bytes] | None = None
        self._cri: CriClient | None = None

    # -- paths -------------------------------------------------------------------------------------------------
    @property
    def socket(self) -> Path:
        return self.dir / "containerd.sock"

    @property
    def config_file(self) -> Path:
        return self.dir / "config.toml"

    @property
    def log(self) -> Path:
        return self.dir / "containerd.log"

    @property
    def cni_bin(self) -> Path:
        return self.dir / "cni-bin"

    @property
    def cni_conf(self) -> Path:
        return self.dir / "net.d"

    @property
    def ipam_dir(self) -> Path:
        """host-local's ``dataDir`` for every conflist of this containerd."""
        return self.dir / "ipam"

    @property
    def cri(self) -> CriClient:
        if self._cri is None:
            self._cri = CriClient(self.socket)
        return self._cri

    # -- set-up ------------------------------------------------------------------------------------------------
    def prepare(self, install_vhostplug: Callable[[Path], object] | None = None) -> None:
        """Write the config and fill the CNI bin folder: Debian's plugins, then our shim through
        ``install_vhostplug(bin_dir)`` (the caller runs `vhostplug install-cni`, as a user would)."""
        for d in (self.dir / "root", self.dir / "state", self.cni_bin, self.cni_conf, self.ipam_dir):
            d.mkdir(parents=True, exist_ok=True)
        for plugin in ("loopback", "host-local", "ptp", "bridge"):
            src = DEBIAN_CNI / plugin
            if not src.exists():
                raise ContainerdError(f"{src} is missing: install Debian's containernetworking-plugins (`make setup`)")
            shutil.copy2(src, self.cni_bin / plugin)
        if install_vhostplug is not None:
            install_vhostplug(self.cni_bin)
        cri = '[plugins."io.containerd.grpc.v1.cri"]'
        self.config_file.write_text(
            "\n".join(
                [
                    "version = 2",
                    f"root = {_toml_str(str(self.dir / 'root'))}",
                    f"state = {_toml_str(str(self.dir / 'state'))}",
                    "disabled_plugins = ["
                    + ", ".join(
                        _toml_str(p)
                        for p in (
                            "io.containerd.snapshotter.v1.aufs",
                            "io.containerd.snapshotter.v1.btrfs",
                            "io.containerd.snapshotter.v1.devmapper",
                            "io.containerd.snapshotter.v1.zfs",
                            "io.containerd.tracing.processor.v1.otlp",
                            "io.containerd.internal.v1.tracing",
                        )
                    )
                    + "]",
                    "[grpc]",
                    f"  address = {_toml_str(str(self.socket))}",
                    "[ttrpc]",
                    f"  address = {_toml_str(str(self.socket) + '.ttrpc')}",
                    "[metrics]",
                    '  address = ""',
                    '[plugins."io.containerd.internal.v1.opt"]',
                    f"  path = {_toml_str(str(self.dir / 'opt'))}",
                    cri,
                    f"  sandbox_image = {_toml_str(self.sandbox_image)}",
                    "  restrict_oom_score_adj = true",
                    "  disable_apparmor = true",
                    "  enable_selinux = false",
                    f"{cri[:-1]}.cni]",
                    f"  bin_dir = {_toml_str(str(self.cni_bin))}",
                    f"  conf_dir = {_toml_str(str(self.cni_conf))}",
                    "  max_conf_num = 1",
                    f"{cri[:-1]}.containerd]",
                    '  snapshotter = "overlayfs"',
                    '  default_runtime_name = "runc"',
                    f"{cri[:-1]}.containerd.runtimes.runc]",
                    '  runtime_type = "io.containerd.runc.v2"',
                    "",
                ]
            )
        )

    def start(self, timeout: float = 60.0) -> None:
        log = open(self.log, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [CONTAINERD, "--config", str(self.config_file), "--log-level", "info"],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise ContainerdError(f"containerd exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.socket.is_socket():
                with contextlib.suppress(Exception):
                    if self.cri.runtime_ready():
                        return
            if time.monotonic() > deadline:
                raise ContainerdError(f"containerd's CRI did not become ready in {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def stop_daemon(self, timeout: float = 20.0) -> None:
        """Stop containerd only (SIGTERM): running sandboxes keep their shims, as on a real node's restart."""
        if self._cri is not None:
            self._cri.close()
            self._cri = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop_daemon()
        self.start()

    def stop(self) -> list[str]:
        """Remove every sandbox, stop containerd, kill our shims if any survived, unmount what is left under our
        folder. Returns what had to be forced (empty when the tests cleaned up after themselves)."""
        forced: list[str] = []
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(Exception):
                for sb in self.cri.list_sandboxes():
                    forced.append(f"sandbox {sb.id} still present at stop")
                    with contextlib.suppress(Exception):
                        self.cri.stop_sandbox(sb.id)
                    with contextlib.suppress(Exception):
                        self.cri.remove_sandbox(sb.id)
        self.stop_daemon()
        for pid in self.shim_pids():
            forced.append(f"killed shim {pid}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for mnt in reversed(self.mounts()):
            forced.append(f"unmounted {mnt}")
            subprocess.run(["umount", "-l", mnt], capture_output=True, check=False)
        return forced

    # -- CNI configuration -------------------------------------------------------------------------------------
    def write_conflist(self, conflist: dict[str, Any] | str, name: str = "10-test.conflist") -> Path:
        """Atomically replace the conf folder's conflist (temporary name in the same folder, then rename: containerd
        1.6 acts on the rename, not on the CREATE of a new file)."""
        text = conflist if isinstance(conflist, str) else json.dumps(conflist, indent=2)
        for old in self.cni_conf.iterdir():
            if old.name != name:
                old.unlink()
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.cni_conf)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.cni_conf / name)
        return self.cni_conf / name

    def wait_cni_config(self, needle: str, timeout: float = 20.0, present: bool = True) -> None:
        """Wait until containerd has loaded a CNI config whose text contains ``needle`` (or no longer does)."""
        deadline = time.monotonic() + timeout
        while True:
            if (needle in self.cri.cni_config_text()) == present:
                return
            if time.monotonic() > deadline:
                raise ContainerdError(f"containerd did not load a CNI config containing {needle!r}:\n{self.log_tail()}")
            time.sleep(0.05)

    # -- images ------------------------------------------------------------------------------------------------
    def ctr(self, *args: str, timeout: float = 300.0) -> str:
        proc = subprocess.run(
            [CTR, "--address", str(self.socket), "--namespace", NAMESPACE, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise ContainerdError(f"ctr {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def import_image(self, archive: Path) -> None:
        self.ctr("images", "import", str(archive))

    def import_pause_image(self) -> None:
        archive = self.dir / "pause.oci.tar"
        build_pause_image(archive, self.sandbox_image)
        self.import_image(archive)

    # -- what is left ------------------------------------------------------------------------------------------
    def shim_pids(self) -> list[int]:
        """Live (not zombie) containerd-shim processes that belong to this containerd."""
        needle = str(self.socket).encode()
        out = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmd = (entry / "cmdline").read_bytes()
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if b"containerd-shim" in cmd and needle in cmd and state != "Z":
                out.append(int(entry.name))
        return out

    def mounts(self) -> list[str]:
        prefix = str(self.dir) + "/"
        with open("/proc/self/mounts") as f:
            return [line.split()[1] for line in f if line.split()[1].startswith(prefix)]

    def leftovers(self) -> list[str]:
        """Everything a fully cleaned-up containerd still holds: sandboxes, shims, mounts, host-local leases."""
        left = [f"sandbox {sb.id} ({sb.state})" for sb in self.cri.list_sandboxes()] if self.proc else []
        left += [f"shim pid {p}" for p in self.shim_pids()]
        left += [f"mount {m}" for m in self.mounts()]
        for net in self.ipam_dir.iterdir() if self.ipam_dir.exists() else []:
            leases = [
                p.name for p in net.iterdir() if p.name not in ("lock",) and not p.name.startswith("last_reserved")
            ]
            left += [f"host-local lease {net.name}/{name}" for name in leases]
        return left

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
