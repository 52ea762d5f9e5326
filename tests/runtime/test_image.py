"""The project's OCI image (``make image``) runs as deploy/ runs it, in the suite's containerd through `ctr run`:

- the node DaemonSet (deploy/node/): its init container installs the shim into a host folder, its agent container
  starts with the ConfigMap's agent.yaml, with the DaemonSet's command, host network, privilege and mounts (each
  hostPath volume is a private folder of the test, the OVS run folder is the private OVS-DPDK's, /sys and /dev are the
  host's); a CNI ADD through the installed shim makes a port and the agent's metrics count it;
- the webhook Deployment (deploy/kubevirt/webhook.yaml): its args on the image's entry point (its liveness and
  readiness probes answered on the port they name), TLS from a mounted
  certificate, NetworkAttachmentDefinitions read from a stand-in API server through a kubeconfig; it answers an
  AdmissionReview with the device request.

From the ConfigMap only the metrics port (a free one: the test shares the host network with other runs) and the
ownership group (this machine has no `hugetlbfs` group; a number, as names resolve against the image's /etc/group)
are changed.
"""

from __future__ import annotations

import base64
import grp
import json
import os
import shutil
import signal
import ssl
import subprocess
import tarfile
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.runtime.conftest import Runtime
from vhostplug_testsupport.containerd_node import free_port
from vhostplug_testsupport.webhook import ApiServer, make_cert, put_nad

REPO = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
IMAGE = f"ghcr.io/vhostplug/vhostplug:{VERSION}"
ARCHIVE = REPO / "build" / f"vhostplug-{VERSION}.oci.tar"


@pytest.fixture(scope="module")
def image(runtime_session: Runtime) -> Iterator[str]:
    # cached: a no-op when nothing the image is made of changed since the last build
    build = subprocess.run([str(REPO / "scripts" / "build-image.sh")], capture_output=True, text=True, cwd=REPO)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    runtime_session.ctrd.import_image(ARCHIVE)
    assert IMAGE in runtime_session.ctrd.ctr("images", "ls", "-q").split()
    yield IMAGE
    runtime_session.ctrd.ctr("images", "rm", IMAGE)


def image_config() -> dict[str, Any]:
    """The image's OCI config (Entrypoint, Cmd, Env), read from the archive."""
    with tarfile.open(ARCHIVE) as tar:

        def blob(digest: str) -> Any:
            f = tar.extractfile(f"blobs/sha256/{digest.split(':', 1)[1]}")
            assert f is not None
            return json.load(f)

        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        manifest = blob(index["manifests"][0]["digest"])
        return dict(blob(manifest["config"]["digest"])["config"])


def argv(container: dict[str, Any]) -> list[str]:
    """What Kubernetes runs for a container: ``command`` replaces the image's Entrypoint, ``args`` its Cmd."""
    config = image_config()
    command = container.get("command") or config.get("Entrypoint") or []
    args = container.get("args") if "args" in container else ([] if "command" in container else config.get("Cmd", []))
    return [*command, *(args or [])]


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind)


# containerd's default capability set (what a container has unless its spec says otherwise)
DEFAULT_CAPS = ["CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID", "SETFCAP",
                "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE"]  # fmt: skip


class Task:
    """One `ctr run` container of the image, with the mounts and privileges of a pod spec's container."""

    def __init__(self, rt: Runtime, name: str, log: Path) -> None:
        self.rt, self.id, self.log = rt, f"{name}-{uuid.uuid4().hex[:6]}", log

    def args(
        self,
        mounts: list[tuple[str, str, bool]],
        privileged: bool,
        host_network: bool,
        read_only: bool = False,
        capabilities: dict[str, list[str]] | None = None,
    ) -> list[str]:
        out = ["--log-uri", f"file://{self.log}"]
        if read_only:
            out.append("--read-only")
        added = (capabilities or {}).get("add", [])
        for cap in (capabilities or {}).get("drop", []):
            # ctr 1.6 takes no ALL, and applies its drops after its adds: drop each default capability not added
            for name in [c for c in DEFAULT_CAPS if c not in added] if cap == "ALL" else [cap]:
                out += ["--cap-drop", f"CAP_{name}"]
        for cap in (capabilities or {}).get("add", []):
            out += ["--cap-add", f"CAP_{cap}"]
        if host_network:
            out.append("--net-host")
        if privileged:
            out.append("--privileged")
        for src, dst, ro in mounts:
            out += ["--mount", f"type=bind,src={src},dst={dst},options=rbind:{'ro' if ro else 'rw'}"]
        return out

    def run(self, image: str, command: list[str], **kw: Any) -> None:
        """Run to completion; fail with the container's output when it exits non-zero."""
        proc = subprocess.run(
            ["ctr", "--address", str(self.rt.ctrd.socket), "--namespace", "k8s.io", "run", "--rm",
             *self.args(**kw), image, self.id, *command],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, f"{command} exited {proc.returncode}: {proc.stdout}{proc.stderr}{self.output()}"

    def start(self, image: str, command: list[str], **kw: Any) -> None:
        self.rt.ctrd.ctr("run", "-d", *self.args(**kw), image, self.id, *command)

    def running(self) -> bool:
        return any(
            line.split()[0] == self.id and "RUNNING" in line
            for line in self.rt.ctrd.ctr("tasks", "ls").splitlines()[1:]
            if line.split()
        )

    def stop(self) -> None:
        ctr = self.rt.ctrd.ctr
        if self.id in ctr("tasks", "ls", "-q").split():
            if self.running():
                ctr("tasks", "kill", "--signal", "SIGTERM", self.id)
                deadline = time.monotonic() + 20
                while self.running() and time.monotonic() < deadline:
                    time.sleep(0.2)
                if self.running():
                    ctr("tasks", "kill", "--signal", "SIGKILL", self.id)
                    time.sleep(1)
            ctr("tasks", "rm", "--force", self.id)
        if self.id in ctr("containers", "ls", "-q").split():
            ctr("containers", "rm", self.id)

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""


def _has_group(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _mounts(container: dict[str, Any], host: dict[str, str]) -> list[tuple[str, str, bool]]:
    return [(host[m["name"]], m["mountPath"], bool(m.get("readOnly"))) for m in container.get("volumeMounts", [])]


def _metric(port: int, name: str, labels: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(f"{name}{{{labels}}} "):
                return float(line.split()[-1])
    return 0.0


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code


def test_default_command_is_the_kubevirt_sidecar(image: str) -> None:
    """KubeVirt starts the binding sidecar with the image's default command (deploy/kubevirt/kubevirt-binding.yaml)."""
    assert argv({}) == ["vhostplug", "kubevirt-sidecar"]
    assert image == IMAGE


def test_node_daemonset_runs_from_the_image(runtime: Runtime, image: str) -> None:
    docs = _docs(REPO / "deploy" / "node" / "vhostplug-node.yaml")
    agent_yaml = yaml.safe_load(_kind(docs, "ConfigMap")["data"]["agent.yaml"])
    pod = _kind(docs, "DaemonSet")["spec"]["template"]["spec"]
    (init,), (agent,) = pod["initContainers"], pod["containers"]
    root = Path(tempfile.mkdtemp(prefix="vhp-img-", dir="/tmp"))
    # the node's root as the init container sees it (read-only at /host): the host's own /usr (its python3), bound
    # read-only, and the node's /opt/cni/bin, which is the cni-bin volume's folder, as on a node
    node_root = root / "node-root"
    for d in ("usr", "opt/cni/bin", "dev", "proc", "tmp"):
        (node_root / d).mkdir(parents=True)
    for link in ("bin", "lib", "lib64", "sbin"):
        (node_root / link).symlink_to(os.readlink(f"/{link}") if os.path.islink(f"/{link}") else f"usr/{link}")
    subprocess.run(["mount", "--bind", "-o", "ro", "/usr", str(node_root / "usr")], check=True)
    host: dict[str, str] = {}
    for vol in pod["volumes"]:
        if "configMap" in vol:
            host[vol["name"]] = str(root / "config")
        elif vol["hostPath"]["path"] == "/":
            host[vol["name"]] = str(node_root)
        elif vol["hostPath"]["path"] == "/opt/cni/bin":
            host[vol["name"]] = str(node_root / "opt/cni/bin")
        elif vol["hostPath"]["path"] in ("/sys", "/dev"):
            host[vol["name"]] = vol["hostPath"]["path"]  # the host's own, as on a node
        elif vol["hostPath"]["path"] == "/var/run/openvswitch":
            host[vol["name"]] = str(runtime.node.ovs.run_dir)  # the private OVS-DPDK's run folder (db.sock)
        else:
            # one private folder per real host folder: on the node /var/run is /run, so the agent-run and sockets
            # volumes (/run/vhostplug, /var/run/vhostplug) are one folder, and the agent relies on that
            real = os.path.realpath(vol["hostPath"]["path"])
            host[vol["name"]] = str(root / "host" / real.strip("/").replace("/", "_"))
        if not Path(host[vol["name"]]).exists():
            Path(host[vol["name"]]).mkdir(parents=True)
    metrics_port = free_port()
    agent_yaml["metricsPort"] = metrics_port
    # node policy this machine cannot take verbatim: it has no `hugetlbfs` group, and inside the image a group name
    # resolves against the image's /etc/group, not the node's; the node's kvm group, by number, stands in for it
    if isinstance(agent_yaml.get("ownership", {}).get("group"), str):
        agent_yaml["ownership"]["group"] = grp.getgrnam("kvm").gr_gid if _has_group("kvm") else 0
    (root / "config" / "agent.yaml").write_text(yaml.safe_dump(agent_yaml))
    net = {"host_network": bool(pod.get("hostNetwork"))}
    agent_task = Task(runtime, "vhp-agent", root / "agent.log")
    try:
        # 1. the init container installs the shim into the host's CNI folder
        Task(runtime, "vhp-install", root / "init.log").run(
            image,
            argv(init),
            mounts=_mounts(init, host),
            privileged=bool(init.get("securityContext", {}).get("privileged")),
            capabilities=init.get("securityContext", {}).get("capabilities"),
            **net,
        )
        shim = Path(host["cni-bin"]) / "vhostplug"
        assert shim.read_text().startswith("#!/usr/bin/python3 -IS\n") and os.access(shim, os.X_OK)

        # 2. the agent container with the ConfigMap's agent.yaml, against the private OVS-DPDK
        agent_task.start(
            image,
            argv(agent),
            mounts=_mounts(agent, host),
            privileged=bool(agent["securityContext"]["privileged"]),
            **net,
        )
        agent_sock = Path(host["agent-run"]) / Path(agent_yaml["listen"]).name
        deadline = time.monotonic() + 120  # a loaded 2-core CI machine
        while not agent_sock.is_socket():
            assert agent_task.running(), f"agent container exited:\n{agent_task.output()}"
            assert time.monotonic() < deadline, f"agent did not listen:\n{agent_task.output()}"
            time.sleep(0.2)

        # 3. a CNI ADD through the installed shim (the host's python3, as kubelet's runtime execs it)
        cid = uuid.uuid4().hex
        conf = {"cniVersion": "1.0.0", "name": "img-net", "type": "vhostplug", "agentSocket": str(agent_sock)}
        env = {
            "CNI_CONTAINERID": cid,
            "CNI_IFNAME": "net1",
            "CNI_NETNS": "/var/run/netns/img",
            "CNI_PATH": "/opt/cni/bin",
        }

        def cni(command: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [str(shim)], input=json.dumps(conf), env={**env, "CNI_COMMAND": command}, capture_output=True,
                text=True, timeout=60,
            )  # fmt: skip

        add = cni("ADD")
        assert add.returncode == 0, add.stdout + add.stderr + agent_task.output()
        result = json.loads(add.stdout)
        port = runtime.node.port_of(cid, "net1")
        assert port is not None and port.external_ids["vhostplug-container-id"] == cid
        assert result["interfaces"][0]["mac"] == port.external_ids["attached-mac"]
        folder = Path(host["sockets"]) / Path(port.external_ids["vhostplug-folder"]).name
        assert (folder / f"{cid}-net1").is_file(), "the app config file is not in the host's socket folder"

        # 4. the agent's metrics endpoint counts the ADD
        assert _metric(metrics_port, "vhostplug_cni_requests_total", 'code="0",verb="ADD"') == 1.0

        # 5. the DaemonSet's probes (on the ConfigMap's port, here the free one): readiness flips to 503 when
        # ovs-vswitchd dies and back when it returns; liveness stays 200 all along (a restart would not help)
        probes = {kind: agent[kind]["httpGet"] for kind in ("livenessProbe", "readinessProbe")}
        assert {p["port"] for p in probes.values()} == {9109}  # the ConfigMap's metricsPort, replaced above

        def probe(kind: str) -> int:
            get = probes[kind]
            return _http_status(f"http://{get['host']}:{metrics_port}{get['path']}")

        assert (probe("livenessProbe"), probe("readinessProbe")) == (200, 200)
        runtime.node.ovs.kill_vswitchd(signal.SIGKILL)
        try:
            until = time.monotonic() + 5
            while probe("readinessProbe") != 503:
                assert time.monotonic() < until, "readiness still 200 with ovs-vswitchd dead"
            assert probe("livenessProbe") == 200
        finally:
            runtime.node.ovs.start_vswitchd()
        until = time.monotonic() + 5
        while probe("readinessProbe") != 200:
            assert time.monotonic() < until, "readiness not back after ovs-vswitchd returned"
        assert probe("livenessProbe") == 200

        delete = cni("DEL")
        assert delete.returncode == 0, delete.stdout + delete.stderr
        assert runtime.node.port_of(cid, "net1") is None and not folder.exists()
    finally:
        agent_task.stop()
        subprocess.run(["umount", str(node_root / "usr")], check=False)
        if not os.path.ismount(node_root / "usr"):
            shutil.rmtree(root, ignore_errors=True)
    assert runtime.ctrd.shim_pids() == []


def test_webhook_runs_from_the_image(runtime: Runtime, image: str) -> None:
    docs = _docs(REPO / "deploy" / "kubevirt" / "webhook.yaml")
    (container,) = _kind(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    root = Path(tempfile.mkdtemp(prefix="vhp-whk-", dir="/tmp"))
    (root / "tls").mkdir()
    (root / "kube").mkdir()
    _, tls_key = make_cert(root / "tls", "tls")
    tls_key.chmod(0o644)  # a throw-away key, read by the webhook's non-root user
    api = ApiServer(tls_dir=root, token="test").start()
    put_nad(api, "default", "vhu-net", {"k8s.v1.cni.cncf.io/resourceName": "vhostplug.io/vhostuser"})
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "c",
                "cluster": {
                    "server": api.url,
                    # a file, as in-cluster (the service account's ca.crt): lightkube writes *-data to a temporary
                    # file, and the Deployment's root filesystem is read-only with no /tmp volume
                    "certificate-authority": "/kube/ca.crt",
                },
            }
        ],
        "users": [{"name": "u", "user": {"token": "test"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }
    (root / "kube" / "config").write_text(yaml.safe_dump(kubeconfig))
    assert api.cert is not None
    shutil.copy(api.cert, root / "kube" / "ca.crt")
    port, health_port = free_port(), free_port()
    # the Deployment's args on the image's entry point; only the ports differ (the test shares the host network)
    ports = {"8443": str(port), "8081": str(health_port)}
    command = [ports.get(a, a) for a in argv(container)] + ["--kubeconfig", "/kube/config"]
    assert command[:2] == ["vhostplug", "webhook"], command
    ctx_sec = container["securityContext"]
    if ctx_sec.get("runAsUser") is not None:  # ctr 1.6 has no --user: drop to the Deployment's user in the container
        uid = str(ctx_sec["runAsUser"])
        command = ["setpriv", "--reuid", uid, "--regid", uid, "--clear-groups", "--no-new-privs", *command]
    mounts = [(str(root / "tls"), m["mountPath"], True) for m in container["volumeMounts"] if "tls" in m["name"]]
    mounts.append((str(root / "kube"), "/kube", True))
    task = Task(runtime, "vhp-webhook", root / "webhook.log")
    try:
        task.start(
            image, command, mounts=mounts, privileged=False, host_network=True,
            read_only=bool(ctx_sec.get("readOnlyRootFilesystem")),
        )  # fmt: skip
        review = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "img-1",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "namespace": "default",
                "operation": "CREATE",
                "object": {
                    "metadata": {"name": "dpdk", "annotations": {"k8s.v1.cni.cncf.io/networks": "vhu-net"}},
                    "spec": {"containers": [{"name": "app", "image": "dpdk"}]},
                },
            },
        }
        tls = ssl.create_default_context(cafile=str(root / "tls" / "tls.crt"))
        deadline = time.monotonic() + 120  # a loaded 2-core CI machine
        while True:
            try:
                req = urllib.request.Request(
                    f"https://127.0.0.1:{port}/mutate", data=json.dumps(review).encode(),
                    headers={"Content-Type": "application/json"},
                )  # fmt: skip
                with urllib.request.urlopen(req, context=tls, timeout=10) as resp:
                    out = json.loads(resp.read())
                break
            except OSError:
                assert task.running(), f"webhook container exited:\n{task.output()}"
                assert time.monotonic() < deadline, f"webhook did not answer:\n{task.output()}"
                time.sleep(0.3)
        assert out["response"]["uid"] == "img-1" and out["response"]["allowed"] is True
        patch = json.loads(base64.b64decode(out["response"]["patch"]))
        # the device request the NAD's resourceName asks for (JSON pointer: "/" in a key is "~1")
        ops = {op["path"]: op.get("value") for op in patch}
        assert ops.get("/spec/containers/0/resources/limits/vhostplug.io~1vhostuser") == "1", patch
        # the Deployment's probes, on the port they name, answer 200
        named = {p["name"]: p["containerPort"] for p in container["ports"] if "name" in p}
        for probe in ("livenessProbe", "readinessProbe"):
            get = container[probe]["httpGet"]
            assert named.get(get["port"], get["port"]) == 8081 and get.get("scheme", "HTTP") == "HTTP", get
            with urllib.request.urlopen(f"http://127.0.0.1:{health_port}{get['path']}", timeout=10) as resp:
                assert resp.status == 200 and json.loads(resp.read())["status"] in ("ok", "ready")
    finally:
        task.stop()
        api.stop()
        shutil.rmtree(root, ignore_errors=True)
    assert runtime.ctrd.shim_pids() == []
