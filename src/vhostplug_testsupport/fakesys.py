"""A fake sysfs + /dev for vDPA tests and benches: real folders, files and relative symlinks laid out as the kernel does."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

PCI_BUS = "devices/pci0000:00"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def _link(path: Path, target: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)


class FakeSys:
    def __init__(self, root: Path) -> None:
        self.sys = root / "sys"
        self.dev = root / "dev"
        self.dev.mkdir(parents=True, exist_ok=True)
        for d in ("bus/vdpa/devices", "bus/vdpa/drivers/vhost_vdpa", "bus/vdpa/drivers/virtio_vdpa"):
            (self.sys / d).mkdir(parents=True, exist_ok=True)

    def pci(self, addr: str) -> Path:
        return self.sys / PCI_BUS / addr

    def add_pf(self, addr: str, netdev: str, numa: int = 0, vendor: str = "0x15b3", device: str = "0x101d") -> None:
        fn = self.pci(addr)
        _write(fn / "vendor", vendor)
        _write(fn / "device", device)
        _write(fn / "numa_node", str(numa))
        (fn / "net" / netdev).mkdir(parents=True)
        _link(fn / "driver", "../../../bus/pci/drivers/mlx5_core")

    def add_vf(
        self,
        addr: str,
        pf: str,
        numa: int = 0,
        vendor: str = "0x15b3",
        device: str = "0x101e",
        pci_driver: str = "mlx5_core",
    ) -> None:
        fn = self.pci(addr)
        _write(fn / "vendor", vendor)
        _write(fn / "device", device)
        _write(fn / "numa_node", str(numa))
        _link(fn / "physfn", f"../{pf}")
        (self.sys / "bus/pci/drivers" / pci_driver).mkdir(parents=True, exist_ok=True)
        _link(fn / "driver", f"../../../bus/pci/drivers/{pci_driver}")

    def add_vdpa(self, parent: str, name: str, driver: str = "vhost_vdpa", index: int = 0, netdev: str = "") -> None:
        """A vDPA device under PCI function ``parent`` bound to ``driver`` (char device N or virtio netdev)."""
        d = self.pci(parent) / name
        d.mkdir(parents=True)
        _link(d / "driver", f"../../../../bus/vdpa/drivers/{driver}")
        if driver == "vhost_vdpa":
            (d / f"vhost-vdpa-{index}").mkdir()
            _write(d / f"vhost-vdpa-{index}" / "dev", f"511:{index}")
            _write(self.dev / f"vhost-vdpa-{index}", "fake char device")
        else:
            (d / f"virtio{index}" / "net" / (netdev or f"eth{index}")).mkdir(parents=True)
        _link(self.sys / "bus/vdpa/devices" / name, f"../../../{PCI_BUS}/{parent}/{name}")

    def remove_vdpa(self, parent: str, name: str) -> None:
        os.unlink(self.sys / "bus/vdpa/devices" / name)
        shutil.rmtree(self.pci(parent) / name)


def standard(root: Path) -> FakeSys:
    """Two Mellanox PFs on NUMA 0 and 1; VFs with vhost vDPA devices, one virtio one, one Intel VF unbound."""
    fs = FakeSys(root)
    fs.add_pf("0000:65:00.0", "ens1f0", numa=0)
    fs.add_pf("0000:b3:00.0", "ens2f0", numa=1)
    fs.add_vf("0000:65:00.2", "0000:65:00.0", numa=0)
    fs.add_vdpa("0000:65:00.2", "vdpa0", index=0)
    fs.add_vf("0000:65:00.3", "0000:65:00.0", numa=0)
    fs.add_vdpa("0000:65:00.3", "vdpa1", index=1)
    fs.add_vf("0000:b3:00.2", "0000:b3:00.0", numa=1)
    fs.add_vdpa("0000:b3:00.2", "vdpa2", index=2)
    fs.add_vf("0000:b3:00.3", "0000:b3:00.0", numa=1)
    fs.add_vdpa("0000:b3:00.3", "vdpa3", driver="virtio_vdpa", index=7, netdev="eth7")
    fs.add_vf("0000:17:00.2", "0000:65:00.0", numa=0, vendor="0x8086", device="0x1889", pci_driver="ifcvf")
    fs.add_vdpa("0000:17:00.2", "vdpa9", driver="unbound_driver", index=9)
    return fs
