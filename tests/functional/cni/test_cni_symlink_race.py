"""A pod swaps symlinks in its own socket folder in a tight loop while the root agent works there: through the real shim
and agent, in client mode (OVS's socket moved in and chowned), server mode (stale socket removed, app config written)
and through the relocator after an ovs-vswitchd restart. The link's target, a root-owned 0600 file, must keep its
mode, owner and content whatever the agent answers."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from vhostplug.lab.ovs import PrivateOvs
from vhostplug.model import port_name_for
from vhostplug_testsupport.cniagent import AgentProc


class Swapper:
    """A thread that keeps renaming fresh symlinks to ``target`` over each of ``names`` in ``folder``."""

    def __init__(self, folder: Path, names: list[str], target: Path) -> None:
        self.folder, self.names, self.target = folder, names, target
        self.stop = threading.Event()
        self.swaps = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self.stop.is_set():
            for name in self.names:
                tmp = self.folder / f".swap{n}"
                n += 1
                with contextlib.suppress(OSError):
                    os.symlink(self.target, tmp)
                    os.rename(tmp, self.folder / name)
                    self.swaps += 1

    def __enter__(self) -> Swapper:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


@contextlib.contextmanager
def victim(short_dir: Path) -> Iterator[Path]:
    target = short_dir / "victim"
    target.write_text("root's secret\n")
    os.chown(target, 0, 0)
    os.chmod(target, 0o600)
    yield target
    st = os.lstat(target)
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o600, 0, 0), "the agent changed the link's target"
    assert target.read_text() == "root's secret\n", "the agent wrote into the link's target"


def _cycles(agent: AgentProc, unique: str, mode: str, short_dir: Path, rounds: int) -> dict[int, int]:
    device = f"r{mode[0]}{unique}"
    conf = agent.netconf(mode=mode, runtimeConfig={"deviceID": device})
    folder = agent.socket_root / device
    codes: dict[int, int] = {}
    with victim(short_dir) as target, Swapper(folder, ["vhu.sock", f"c{unique}-net1"], target) as swapper:
        for _ in range(rounds):
            r = agent.run("ADD", conf, f"c{unique}")
            codes[r.code] = codes.get(r.code, 0) + 1
            d = agent.run("DEL", conf, f"c{unique}")
            assert d.code == 0, d.raw
        assert swapper.swaps > rounds, "the swapper did not run"
    assert port_name_for(f"c{unique}", "net1") not in agent.our_ports()
    return codes


def test_client_mode_adds_under_a_symlink_swapping_pod(agent: AgentProc, unique: str, short_dir: Path) -> None:
    codes = _cycles(agent, unique, "client", short_dir, 25)
    assert sum(codes.values()) == 25


def test_server_mode_adds_under_a_symlink_swapping_pod(agent: AgentProc, unique: str, short_dir: Path) -> None:
    codes = _cycles(agent, unique, "server", short_dir, 25)
    assert sum(codes.values()) == 25


def test_relocator_after_ovs_restart_under_a_symlink_swapping_pod(
    agent: AgentProc, private_ovs: PrivateOvs, unique: str, short_dir: Path
) -> None:
    device = f"rl{unique}"
    conf = agent.netconf(mode="client", runtimeConfig={"deviceID": device})
    r = agent.run("ADD", conf, f"rl{unique}")
    assert r.code == 0, r.raw
    folder = agent.socket_root / device
    with victim(short_dir) as target, Swapper(folder, ["vhu.sock"], target) as swapper:
        for _ in range(3):
            private_ovs.restart_vswitchd()
            # the relocator (every 0.2 s) tries to move the socket OVS made again while links keep replacing it
            deadline = time.monotonic() + 5
            while (
                time.monotonic() < deadline
                and (private_ovs.vhost_sock_dir / port_name_for(f"rl{unique}", "net1")).exists()
            ):
                time.sleep(0.05)
        assert swapper.swaps > 100
    assert agent.run("DEL", conf, f"rl{unique}").code == 0
