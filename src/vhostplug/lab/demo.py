"""`vhostplug lab demo`: the whole stack end to end on one machine, non-interactive, then a report.

The lab plays the parts a cluster would: kubelet (device plugin protocol, mounts into the pod), the container runtime
(network namespace + mount namespace per pod), Multus (device-info copy, CNI exec, network-status annotation) and
virt-launcher (CNI for the VM pod, network-info file, the hook sidecar's OnDefineDomain, libvirt). What it runs for
real: the private OVS-DPDK, the node agent (CNI server + device plugin), the installed CNI shim, `vhostplug podinfo`
and DPDK testpmd inside the pods, the KubeVirt sidecar, libvirt and QEMU.

Everything it makes is recorded in ``<run_dir>/demo/state.json`` before it is made, so :func:`cleanup` (called by
``vhostplug lab down``) undoes a crashed or killed demo too.

Failure injection (tests, documented in docs/lab.md): ``VHOSTPLUG_DEMO_TESTPMD=<binary>`` runs that binary instead
of ``dpdk-testpmd`` inside the pods; a bogus path makes the testpmd step fail and the demo tear down.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vhostplug.lab.pods import LabPod, ProcRef, pids_with_arg
from vhostplug.lab.report import DemoError, Progress, log_tail

RESOURCE = "vhostplug.io/vhostuser"
IFNAME = "net1"
NAMESPACE = "demo"
POD_NAD = "vhostplug-pods"
VM_NAD = "vhostplug-vms"
POD_SUBNET = "10.56.0.0/24"
VM_SUBNET = "10.57.0.0/24"
ENV_TESTPMD = "VHOSTPLUG_DEMO_TESTPMD"
DPDK_RUN = Path("/var/run/dpdk")
NETWORK_STATUS = "k8s.v1.cni.cncf.io/network-status"
TRAFFIC_SECONDS = 4.0


def _vhostplug_exe() -> str:
    return str(Path(sys.executable).with_name("vhostplug"))


# ---- state on disk -------------------------------------------------------------------------------------------------
class State:
    """What the demo made, saved after every change: ``cleanup`` works from this file alone."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / "demo" / "state.json"
        self.data: dict[str, Any] = {
            "pods": [],
            "attachments": [],
            "testpmd_prefixes": [],
            "sidecars": [],
            "domains": [],
            "libvirt_started": [],
            "host_dirs": [],
        }
        with contextlib.suppress(OSError, ValueError):
            self.data.update(json.loads(self.path.read_text()))

    def add(self, key: str, value: Any) -> None:
        self.data[key].append(value)
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2))
        os.replace(tmp, self.path)


# ---- names ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Names:
    """Names unique to one run folder (another lab may run beside this one)."""

    tag: str

    @classmethod
    def of(cls, run_dir: Path) -> Names:
        return cls(hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:6])

    def netns(self, who: str) -> str:
        return f"vhp{self.tag}-{who}"

    def bridge(self, kind: str) -> str:
        return f"vh{kind}{self.tag}"  # the netdev bridge is also a host tap: unique per lab

    def prefix(self, who: str) -> str:
        return f"vhp{self.tag}{who}"

    def domain(self, who: str) -> str:
        return f"vhp-{self.tag}-{who}"


# ---- the CNI call, as a runtime + Multus make it ---------------------------------------------------------------------
@dataclass
class Attachment:
    kind: str  # pod | vm
    name: str
    uid: str
    container_id: str
    netns_path: str
    device: str
    netconf: dict[str, Any]
    result: dict[str, Any] = field(default_factory=dict)

    def cni_env(self, command: str, cni_path: str) -> dict[str, str]:
        args = {
            "IgnoreUnknown": "1",
            "K8S_POD_NAMESPACE": NAMESPACE,
            "K8S_POD_NAME": self.name,
            "K8S_POD_INFRA_CONTAINER_ID": self.container_id,
            "K8S_POD_UID": self.uid,
        }
        return {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": self.container_id,
            "CNI_NETNS": self.netns_path,
            "CNI_IFNAME": IFNAME,
            "CNI_PATH": cni_path,
            "CNI_ARGS": ";".join(f"{k}={v}" for k, v in args.items()),
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        }

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def exec_cni(shim: Path, cni_path: Path, att: Attachment, command: str) -> dict[str, Any]:
    """Exec the installed shim exactly as a runtime does; raise with the plugin's error JSON on failure."""
    env = att.cni_env(command, str(cni_path))
    proc = subprocess.run(
        [str(shim)], input=json.dumps(att.netconf), env=env, capture_output=True, text=True, timeout=60, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"CNI {command} for {att.kind} {att.name} exited {proc.returncode}: {proc.stdout.strip()} "
            f"{proc.stderr.strip()}".strip()
        )
    out: dict[str, Any] = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return out


def netconf(
    nad: str, paths: Any, bridge: str, device: str, devinfo_file: Path, subnet: str, container_root: str | None = None
) -> dict[str, Any]:
    """The delegate netconf Multus hands our plugin: NAD config + deviceID + runtimeConfig for our capabilities."""
    conf: dict[str, Any] = {
        "cniVersion": "1.1.0",
        "name": nad,
        "type": "vhostplug",
        "agentSocket": str(paths.agent_socket),
        "socketRoot": str(paths.socket_root),
        "bridge": bridge,
        "capabilities": {"deviceID": True, "CNIDeviceInfoFile": True},
        "ipam": {"type": "host-local", "subnet": subnet, "dataDir": str(paths.ipam_dir)},
        "deviceID": device,
        "runtimeConfig": {"deviceID": device, "CNIDeviceInfoFile": str(devinfo_file)},
    }
    if container_root:
        conf["containerSocketRoot"] = container_root
    return conf


def multus_devinfo(paths: Any, nad: str, att_id: str, device: str) -> Path:
    """Multus copies the device plugin's device-info file to the CNI's path before ADD; returns that path."""
    from vhostplug import deviceinfo

    src = deviceinfo.dp_dir(paths.devinfo_dir) / deviceinfo.dp_file_name(RESOURCE, device)
    dst = Path(paths.devinfo_dir) / "cni" / f"{nad}-{att_id}-{IFNAME}-device.json"
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def network_status(nad: str, result: dict[str, Any], devinfo_file: Path) -> list[dict[str, Any]]:
    """The Multus ``network-status`` entry of our interface (device-info read back after ADD)."""
    iface = next(i for i in result.get("interfaces", []) if i.get("sandbox"))
    return [
        {
            "name": f"{NAMESPACE}/{nad}",
            "interface": iface["name"],
            "ips": [ip["address"].split("/")[0] for ip in result.get("ips", [])],
            "mac": iface["mac"],
            "dns": result.get("dns", {}),
            "device-info": json.loads(devinfo_file.read_text()),
        }
    ]


def annotations_file(annotations: dict[str, str]) -> str:
    """Kubernetes downward API annotations format: ``key="<Go-quoted value>"`` lines, as kubelet writes them."""
    from vhostplug.podinfo.goquote import quote

    return "".join(f"{k}={quote(v)}\n" for k, v in sorted(annotations.items()))


# ---- the demo ------------------------------------------------------------------------------------------------------
class Demo:
    def __init__(self, run_dir: Path, progress: Progress) -> None:
        from vhostplug.lab.stack import LabPaths

        self.run_dir = Path(run_dir)
        self.paths = LabPaths(self.run_dir)
        self.names = Names.of(self.run_dir)
        self.progress = progress
        self.state = State(self.run_dir)
        self.kubelet: Any = None
        self.pods: dict[str, LabPod] = {}
        self.atts: dict[str, Attachment] = {}
        self.report: dict[str, Any] = {"run_dir": str(self.run_dir), "pods": [], "vms": [], "ovs_ports": []}
        self.ovs_endpoint = ""

    # -- phases --------------------------------------------------------------------------------------------------
    def lab_up(self) -> None:
        from vhostplug.lab.stack import lab_up

        with self.progress.phase(
            "start OVS-DPDK, node agent, CNI shim", [self.paths.ovs_dir / "ovs-vswitchd.log", self.paths.agent_log]
        ) as ph:
            ph.doing("vhostplug.lab.stack.lab_up (ovsdb-server, ovs-vswitchd-dpdk, vhostplug agent)")
            status = lab_up(self.run_dir)
            self.ovs_endpoint = f"unix:{status['ovsdb']}"
            ph.note = f"dpdk_initialized={status['dpdk_initialized']} agent pid {status['pid_agent']}"

    def start_kubelet(self) -> None:
        from vhostplug.lab.kubelet import LabKubelet

        with self.progress.phase("lab kubelet: device plugin registers", [self.paths.agent_log]) as ph:
            ph.doing(f"LabKubelet({self.paths.device_plugin_dir}) and wait for {RESOURCE}")
            self.kubelet = LabKubelet(self.paths.device_plugin_dir)
            self.kubelet.start()
            devices = self.kubelet.wait_for(
                RESOURCE, lambda ds: len(ds) >= 4 and all(d.health == "Healthy" for d in ds), timeout=30
            )
            ph.note = f"{RESOURCE}: {len(devices)} healthy devices"

    def _allocate(self, ph: Any, who: str) -> tuple[str, Any]:
        ph.doing(f"kubelet Allocate 1 x {RESOURCE} for {who}")
        ids, resp = self.kubelet.allocate(RESOURCE, 1)
        return str(ids[0]), resp

    def _attach(self, ph: Any, att: Attachment) -> None:
        ph.doing(f"exec {self.paths.cni_bin} (CNI_COMMAND=ADD CNI_NETNS={att.netns_path} CNI_IFNAME={IFNAME})")
        self.state.add("attachments", att.to_json())
        att.result = exec_cni(self.paths.cni_bin, self.paths.cni_bin_dir, att, "ADD")
        self.atts[att.name] = att

    def create_pods(self) -> None:
        from vhostplug.lab import pods
        from vhostplug.lab.kubelet import apply_to_pod

        with self.progress.phase("pods: sandbox, device, CNI ADD, downward API", [self.paths.agent_log]) as ph:
            ph.doing("mount points for the pods' private tmpfs")
            for d in pods.ensure_host_dirs(pods.POD_TMPFS):
                self.state.add("host_dirs", d)
            for who in ("pod-a", "pod-b"):
                name = f"testpmd-{who[-1]}"
                uid = str(uuid.uuid4())
                netns = self.names.netns(who)
                ph.doing(f"ip netns add {netns} + unshare --mount holder for pod {name}")
                self.state.add("pods", {"name": name, "netns": netns, "holder": None})
                pod = pods.create_pod(name, NAMESPACE, uid, netns)
                self.state.data["pods"][-1] = pod.to_json()
                self.state.save()
                self.pods[name] = pod
                device, resp = self._allocate(ph, f"pod {name}")
                ph.doing(f"bind-mount {device}'s folder into pod {name} (kubelet applies the Allocate mounts)")
                apply_to_pod(resp, pod.holder.pid)
                cid = uuid.uuid4().hex + uuid.uuid4().hex
                ph.doing(f"Multus: copy the dp device-info of {device}")
                devinfo = multus_devinfo(self.paths, POD_NAD, cid[:12], device)
                conf = netconf(POD_NAD, self.paths, self.names.bridge("p"), device, devinfo, POD_SUBNET)
                att = Attachment("pod", name, uid, cid, pod.netns_path, device, conf)
                self._attach(ph, att)
                ph.doing(f"write {pods.ANNOTATIONS} in pod {name}")
                status = network_status(POD_NAD, att.result, devinfo)
                pod.write(
                    pods.ANNOTATIONS,
                    annotations_file({NETWORK_STATUS: json.dumps(status), "k8s.v1.cni.cncf.io/networks": POD_NAD}),
                )
            ph.note = ", ".join(f"{a.name}←{a.device}" for a in self.atts.values())

    def run_testpmd(self) -> None:
        from vhostplug.lab.testpmd import TESTPMD, Testpmd

        binary = os.environ.get(ENV_TESTPMD, TESTPMD)
        with self.progress.phase("testpmd in the pods: traffic through OVS", [self.paths.agent_log]) as ph:
            tps: dict[str, Testpmd] = {}
            try:
                for name, pod in self.pods.items():
                    ph.doing(f"vhostplug podinfo --dpdk-args (in pod {name})")
                    out = pod.exec(_vhostplug_exe(), "podinfo", "--dpdk-args", "--wait", "10", what="podinfo")
                    vdevs = [line.split(None, 1)[1] for line in out.splitlines() if line.startswith("--vdev ")]
                    if not vdevs:
                        raise RuntimeError(f"podinfo printed no --vdev in pod {name}: {out!r}")
                    prefix = self.names.prefix(name[-1])
                    self.state.add("testpmd_prefixes", prefix)
                    tp = Testpmd(vdevs, prefix, wrap=pod.nsenter())
                    tp.argv[tp.argv.index(TESTPMD)] = binary
                    ph.doing(" ".join(tp.argv))
                    tps[name] = tp  # stopped in `finally` even when start fails half-way
                    tp.start(timeout=60)
                    self.report["pods"].append({"name": name, "vdevs": vdevs, "file_prefix": prefix})
                for name, tp in tps.items():
                    ph.doing(f"testpmd link up in pod {name} (OVS connects to the socket testpmd serves)")
                    tp.wait_link_up(0, timeout=45)
                (a, tp_a), (b, tp_b) = tps.items()
                ph.doing(f"testpmd in {b}: start (io forwarding); in {a}: start tx_first 8")
                tp_b.cmd("start")
                _seed_loop(tp_a, tp_b)
                before = {n: tp.stats()[0] for n, tp in tps.items()}
                t0 = time.monotonic()
                time.sleep(TRAFFIC_SECONDS)
                after = {n: tp.stats()[0] for n, tp in tps.items()}
                dt = time.monotonic() - t0
                for entry in self.report["pods"]:
                    n = entry["name"]
                    entry.update(
                        role="start tx_first 8 (io fwd)" if n == a else "io forwarding",
                        rx_packets=after[n].rx_packets,
                        tx_packets=after[n].tx_packets,
                        rx_pps=int((after[n].rx_packets - before[n].rx_packets) / dt),
                        tx_pps=int((after[n].tx_packets - before[n].tx_packets) / dt),
                    )
                ph.doing("OVS interface statistics of the pods' ports (while the traffic runs)")
                self.report["ovs_ports"] += self._wait_ovs_counters([a for a in self.atts.values() if a.kind == "pod"])
                for tp in tps.values():
                    tp.cmd("stop", timeout=20)
                ph.note = ", ".join(f"{e['name']} {e['rx_pps']:,} rx pps" for e in self.report["pods"])
            finally:
                for tp in tps.values():
                    tp.stop()

    def _wait_ovs_counters(self, atts: list[Attachment], timeout: float = 12.0) -> list[dict[str, Any]]:
        """OVS publishes Interface statistics every 5 s: wait until every port shows traffic both ways."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.ovs_ports(atts)
            if all(r["rx_packets"] > 0 and r["tx_packets"] > 0 for r in rows):
                return rows
            if time.monotonic() > deadline:
                raise RuntimeError(f"OVS counters show no traffic both ways: {rows}")
            time.sleep(0.5)

    def ovs_ports(self, atts: list[Attachment]) -> list[dict[str, Any]]:
        from vhostplug.dataplane import ovsdb_rpc
        from vhostplug.model import port_name_for

        out = []
        for att in atts:
            port = port_name_for(att.container_id, IFNAME)
            rows = ovsdb_rpc.select(
                self.ovs_endpoint,
                "Interface",
                where=[["name", "==", port]],
                columns=["name", "type", "link_state", "statistics", "options"],
            )
            row = rows[0] if rows else {}
            stats = {k: int(v) for k, v in ovsdb_rpc.ovs_map(row.get("statistics")).items()}
            link = row.get("link_state")
            out.append(
                {
                    "name": port,
                    "owner": f"{att.kind} {att.name}",
                    "type": row.get("type", "(missing)"),
                    "link_state": link if isinstance(link, str) else "-",
                    "vhost_server_path": ovsdb_rpc.ovs_map(row.get("options")).get("vhost-server-path", ""),
                    "rx_packets": stats.get("rx_packets", 0),
                    "tx_packets": stats.get("tx_packets", 0),
                    "rx_dropped": stats.get("rx_dropped", 0),
                    "tx_dropped": stats.get("tx_dropped", 0),
                }
            )
        return out

    def run_vms(self) -> None:
        from vhostplug.lab import vms

        with self.progress.phase(
            "virt-launchers: device, CNI ADD, sidecar OnDefineDomain", [self.paths.agent_log]
        ) as ph:
            ph.doing("start libvirtd / virtlogd when not running")
            lv = vms.Libvirt()
            lv.start()
            for d in lv.started:
                self.state.add("libvirt_started", d)
            launchers = {who: self._launcher(ph, lv, who) for who in ("a", "b")}
            ips = {who: launchers[who]["ip"] for who in launchers}
            for who, peer in (("a", "b"), ("b", "a")):
                launchers[who]["peer"] = ips[peer].split("/")[0]
            for who, launcher in launchers.items():
                self._define_vm(ph, lv, who, launcher)
            ph.note = ", ".join(f"{lab['domain']}←{lab['device']}" for lab in launchers.values())
        consoles = {who: vms.Console(Path(lab["root"]) / "console.log") for who, lab in launchers.items()}
        with self.progress.phase(
            "VMs boot (TCG) and ping each other through OVS", [c.path for c in consoles.values()]
        ) as ph:
            t0 = time.monotonic()
            for launcher in launchers.values():
                ph.doing(f"virsh start {launcher['domain']}")
                lv.start_domain(launcher["domain"])
            for launcher in launchers.values():
                ph.doing(f"virsh domstate {launcher['domain']} (running once OVS connected)")
                lv.wait_state(launcher["domain"], "running", 60)
            for who, console in consoles.items():
                ph.doing(f"wait for the first ping reply on the serial console of {launchers[who]['domain']}")
                console.wait_for(r"VHP-PING-OK", 120)
                first = time.monotonic() - t0
                ph.doing(f"wait for the ping summary on the serial console of {launchers[who]['domain']}")
                m = console.wait_for(r"(\d+) packets transmitted, (\d+) packets received", 30)
                rtt = console.wait_for(r"round-trip min/avg/max = ([\d.]+)/([\d.]+)/([\d.]+) ms", 10)
                self.report["vms"].append(
                    {
                        "name": launchers[who]["domain"],
                        "ip": launchers[who]["ip"],
                        "peer": launchers[who]["peer"],
                        "ping_transmitted": int(m.group(1)),
                        "ping_received": int(m.group(2)),
                        "rtt_min_ms": float(rtt.group(1)),
                        "rtt_avg_ms": float(rtt.group(2)),
                        "rtt_max_ms": float(rtt.group(3)),
                        "first_reply_s": round(first, 1),
                    }
                )
            ph.doing("OVS interface statistics of the VMs' ports")
            self.report["ovs_ports"] += self._wait_ovs_counters([a for a in self.atts.values() if a.kind == "vm"], 15)
            ph.note = ", ".join(f"{v['name']} {v['ping_received']}/{v['ping_transmitted']}" for v in self.report["vms"])

    def _launcher(self, ph: Any, lv: Any, who: str) -> dict[str, Any]:
        """One virt-launcher pod: netns, device, CNI ADD, network-info file, sidecar process."""
        from vhostplug.lab import pods

        name = f"virt-launcher-vm-{who}"
        root = self.run_dir / "vm" / who
        root.mkdir(parents=True, exist_ok=True)
        netns = self.names.netns(f"vm{who}")
        ph.doing(f"ip netns add {netns} (virt-launcher pod sandbox)")
        self.state.add("pods", {"name": name, "netns": netns, "holder": None})
        pods.run(["ip", "netns", "add", netns], f"sandbox of {name}")
        device, _resp = self._allocate(ph, name)
        # the lab's virt-launcher compute container is the host itself (libvirtd runs there): the device folder's
        # "container path" is its host path, so the VM NAD sets containerSocketRoot to the socket root
        uid = str(uuid.uuid4())
        cid = uuid.uuid4().hex + uuid.uuid4().hex
        devinfo = multus_devinfo(self.paths, VM_NAD, cid[:12], device)
        conf = netconf(
            VM_NAD, self.paths, self.names.bridge("v"), device, devinfo, VM_SUBNET, str(self.paths.socket_root)
        )
        att = Attachment("vm", name, uid, cid, str(pods.NETNS_DIR / netns), device, conf)
        self._attach(ph, att)
        status = network_status(VM_NAD, att.result, devinfo)[0]
        info = {"interfaces": [{"network": IFNAME, "deviceInfo": status["device-info"], "mac": status["mac"]}]}
        (root / "network-info").write_text(json.dumps(info))
        _traversable(self.paths.socket_root, root)
        hook = root / "hook.sock"
        argv = [
            _vhostplug_exe(),
            "kubevirt-sidecar",
            "--socket",
            str(hook),
            "--network-info",
            str(root / "network-info"),
            "--links-dir",
            str(root / "links"),
        ]
        ph.doing(" ".join(argv))
        with open(root / "sidecar.log", "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=dict(os.environ, NETWORK_BINDING_PLUGIN_NAME="vhostuser", CONTAINER_NAME="hook-sidecar-0"),
                start_new_session=True,
            )
        self.state.add("sidecars", {"pid": proc.pid, "start": ProcRef.of(proc.pid).start, "socket": str(hook)})
        deadline = time.monotonic() + 20
        while not hook.is_socket():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the sidecar did not serve {hook}:\n{log_tail(root / 'sidecar.log')}")
            time.sleep(0.05)
        return {
            "root": str(root),
            "device": device,
            "domain": self.names.domain(f"vm-{who}"),
            "mac": status["mac"],
            "ip": att.result["ips"][0]["address"],
            "hook": str(hook),
        }

    def _define_vm(self, ph: Any, lv: Any, who: str, launcher: dict[str, Any]) -> None:
        import grpc

        from vhostplug.kubevirt.hooks import v1alpha3_pb2, v1alpha3_pb2_grpc
        from vhostplug.lab import vms

        domain = launcher["domain"]
        root = Path(launcher["root"])
        cmdline = f"vhp.ip={launcher['ip']} vhp.peer={launcher['peer']} vhp.interval=0"
        base = vms.lab_domain_xml(domain, root / "console.log", cmdline)
        ph.doing(f"OnDefineDomain over gRPC at {launcher['hook']} (v1alpha3)")
        with grpc.insecure_channel(f"unix:{launcher['hook']}") as ch:
            res = v1alpha3_pb2_grpc.CallbacksStub(ch).OnDefineDomain(  # type: ignore[no-untyped-call]
                v1alpha3_pb2.OnDefineDomainParams(domainXML=base.encode(), vmi=_vmi_json(domain, launcher["mac"])),
                timeout=60,
            )
        (root / "domain-from-sidecar.xml").write_bytes(res.domainXML)
        ph.doing(f"virsh define {root / (domain + '.xml')} (with the lab-only vectors=0 override)")
        self.state.add("domains", domain)
        lv.define(vms.add_lab_overrides(res.domainXML), root)

    def teardown(self) -> list[str]:
        from vhostplug.lab.stack import lab_down

        if self.kubelet is not None:
            self.kubelet.stop()
            self.kubelet = None
        return lab_down(self.run_dir)


def _seed_loop(tp_a: Any, tp_b: Any, tries: int = 5) -> None:
    """``start tx_first 8`` in A until the packets loop A → OVS → B → OVS → A (a burst sent while OVS is still
    enabling B's queues can be lost, and then nothing circulates: stop and seed again)."""
    for _ in range(tries):
        tp_a.cmd("start tx_first 8")
        time.sleep(1.0)
        first = tp_a.stats()[0].rx_packets
        time.sleep(0.5)
        if tp_a.stats()[0].rx_packets > first and tp_b.stats()[0].rx_packets > 0:
            return
        tp_a.cmd("stop", timeout=20)
    raise RuntimeError(f"packets do not loop between the pods after {tries} x `start tx_first 8`")


def _vmi_json(name: str, mac: str) -> bytes:
    """The VMI the sidecar receives: one interface bound to the vhostuser network binding."""
    return json.dumps(
        {
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "domain": {
                    "devices": {"interfaces": [{"name": IFNAME, "binding": {"name": "vhostuser"}, "macAddress": mac}]}
                },
                "networks": [{"name": IFNAME, "multus": {"networkName": f"{NAMESPACE}/{VM_NAD}"}}],
            },
        }
    ).encode()


def _traversable(*paths: Path) -> None:
    """QEMU runs as libvirt-qemu: let it traverse (search only) the folders above its socket."""
    for path in paths:
        for p in [path, *path.parents]:
            if p == Path("/"):
                break
            st = p.stat()
            if st.st_uid == 0 and not st.st_mode & 0o001:
                os.chmod(p, (st.st_mode & 0o7777) | 0o001)


# ---- entry points --------------------------------------------------------------------------------------------------
def run_demo(run_dir: Path, json_out: Path | None = None, keep: bool = False, vms: bool = True) -> int:
    """Run the demo; 0 when every step passed. ``vms=False`` stops after the pods (quicker, for tests)."""
    from rich.console import Console

    from vhostplug.lab.report import render, write_json

    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 150))
    progress = Progress(console)
    run_dir = Path(run_dir)
    if (run_dir / "demo" / "state.json").exists():
        for line in cleanup(run_dir):
            console.print(f"[dim]earlier demo: {line}[/]")
    demo = Demo(run_dir, progress)
    t0 = time.monotonic()
    error: DemoError | None = None
    try:
        demo.lab_up()
        demo.start_kubelet()
        demo.create_pods()
        demo.run_testpmd()
        if vms:
            demo.run_vms()
    except DemoError as exc:
        error = exc
    except KeyboardInterrupt:
        error = DemoError("interrupted", "-", "KeyboardInterrupt")
    report = demo.report
    with contextlib.suppress(Exception):
        report["attachments"] = [_attachment_row(a) for a in demo.atts.values()]
        if error is not None and demo.ovs_endpoint:
            report["ovs_ports"] = demo.ovs_ports(list(demo.atts.values()))
    report.setdefault("attachments", [])
    if error is None and not keep:
        with progress.phase("teardown"):
            report["teardown"] = demo.teardown()
    elif error is not None:
        console.print(f"[red bold]demo failed[/] at step [bold]{error.step}[/]\n  command: {error.command}")
        console.print("  " + "\n  ".join(error.detail.splitlines()[-25:]), markup=False, highlight=False)
        for path, tail in error.logs.items():
            console.print(f"[dim]--- {path} (tail) ---[/]\n{tail}")
        if keep:
            console.print(f"--keep: left as it is; `vhostplug lab down --run-dir {run_dir}` removes it")
        else:
            t_down = time.monotonic()
            try:
                report["teardown"] = demo.teardown()
            except Exception as exc:  # the failure report must still come out
                report["teardown"] = [f"teardown failed: {exc}"]
            progress.phases.append(_phase("teardown", time.monotonic() - t_down))
            console.print("torn down: " + "; ".join(report["teardown"]))
    report["ok"] = error is None
    report["error"] = error.to_json() if error else None
    report["phases"] = progress.to_json()
    report["total_seconds"] = round(time.monotonic() - t0, 1)
    report["kept"] = keep
    if error is None:
        render(report, console)
        if keep:
            console.print(
                f"--keep: the lab is running ({run_dir}): `vhostplug lab status --run-dir {run_dir}`, then "
                f"`vhostplug lab down --run-dir {run_dir}`. Pods: `ip netns list | grep vhp{demo.names.tag}`; "
                f"VMs: `virsh list`."
            )
    if json_out is not None:
        write_json(report, Path(json_out))
    return 0 if error is None else 1


def _phase(name: str, seconds: float) -> Any:
    from vhostplug.lab.report import Phase

    return Phase(name, seconds=seconds)


def _attachment_row(att: Attachment) -> dict[str, Any]:
    from vhostplug.model import port_name_for

    iface: dict[str, Any] = next((i for i in att.result.get("interfaces", []) if i.get("sandbox")), {})
    devinfo = Path(att.netconf["runtimeConfig"]["CNIDeviceInfoFile"])
    try:
        container_socket = json.loads(devinfo.read_text())["vhost-user"]["path"]
    except (OSError, ValueError, KeyError):
        container_socket = ""
    return {
        "kind": att.kind,
        "name": att.name,
        "device": att.device,
        "container_id": att.container_id,
        "ovs_port": port_name_for(att.container_id, IFNAME),
        "bridge": att.netconf["bridge"],
        "host_socket": iface.get("socketPath", ""),
        "container_socket": container_socket,
        "mac": iface.get("mac", ""),
        "ips": [ip["address"] for ip in att.result.get("ips", [])],
        "netns": att.netns_path,
    }


def cleanup(run_dir: Path) -> list[str]:
    """Undo what a demo made in ``run_dir`` (also after a crash): testpmd, VMs, sidecars, CNI attachments, pods."""
    from vhostplug.lab import pods

    state_path = Path(run_dir) / "demo" / "state.json"
    if not state_path.exists():
        return []
    st = State(Path(run_dir)).data
    done: list[str] = []
    for prefix in st["testpmd_prefixes"]:
        for pid in pids_with_arg(f"--file-prefix={prefix}"):
            if ProcRef.of(pid).kill():
                done.append(f"stopped testpmd {prefix} (pid {pid})")
        if (DPDK_RUN / prefix).exists():
            shutil.rmtree(DPDK_RUN / prefix, ignore_errors=True)
            done.append(f"removed {DPDK_RUN / prefix}")
    done += _cleanup_domains(st["domains"], st["libvirt_started"])
    for sc in st["sidecars"]:
        if ProcRef(sc["pid"], sc["start"]).kill():
            done.append(f"stopped sidecar (pid {sc['pid']})")
    from vhostplug.lab.stack import LabPaths

    paths = LabPaths(Path(run_dir))
    for data in reversed(st["attachments"]):
        att = Attachment(**data)
        if paths.agent_socket.is_socket():
            try:
                exec_cni(paths.cni_bin, paths.cni_bin_dir, att, "DEL")
                done.append(f"CNI DEL {att.kind} {att.name} ({att.device})")
            except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                done.append(f"CNI DEL {att.kind} {att.name} failed: {exc}")
    for p in reversed(st["pods"]):
        if p.get("holder"):
            done += pods.delete_pod(LabPod.from_json(p))
        elif (pods.NETNS_DIR / p["netns"]).exists():
            subprocess.run(["ip", "netns", "del", p["netns"]], capture_output=True, check=False)
            done.append(f"deleted netns {p['netns']}")
    for d in reversed(st["host_dirs"]):
        with contextlib.suppress(OSError):
            os.rmdir(d)
            done.append(f"removed {d}")
    state_path.unlink(missing_ok=True)
    return done


def _cleanup_domains(domains: list[str], started: list[str]) -> list[str]:
    if not domains and not started:
        return []
    from vhostplug.lab.vms import LabVmError, Libvirt

    lv = Libvirt()
    done = []
    try:
        if domains:
            lv.start()
        listed = lv.virsh("list", "--all", "--name", check=False).split() if domains else []
        for name in domains:
            if name in listed:
                lv.remove(name)
                done.append(f"removed domain {name}")
    except (LabVmError, OSError, subprocess.SubprocessError) as exc:
        done.append(f"cannot remove domains {domains}: {exc}")
    lv.started = sorted(set(lv.started) | set(started))
    done += lv.stop()
    return done
