#!/usr/bin/env python3
"""Memory footprint of the node agent and of the webhook: RSS of the real processes, read from /proc.

Each component is started as a cluster runs it (`vhostplug agent` with its device plugin registered at a lab kubelet,
over the noop dataplane; `vhostplug webhook` over TLS reading NADs from a stand-in kube-apiserver) and its RSS
(`VmRSS`, and the peak `VmHWM`) is read after start, after 1,000 ordinary requests, right after a burst of large
ones, after a 2 s settle, and after 100 more ordinary requests.

- agent: ordinary = CNI ADD then DEL of one attachment through the installed shim (500 pairs); large = ADDs whose
  netconf carries an unknown ``padding`` key of 200 kB (20), 3 MiB (10) and 6 MiB (5, over the agent's 4 MiB limit),
  each followed by a DEL; all of them are refused (the exit codes are recorded).
- webhook: ordinary = a Pod review naming two networks; large = 5 reviews of a 4.97 MB pod (60,000 env vars),
  3 bodies of 9 MB sent in full and 1 announcing 200 MB (refused with 413), 2 chunked 9 MB bodies.

- webhook at once (``--only concurrency``): 50, 100, 200 and 400 ordinary reviews sent together on as many TLS
  connections (RSS after each level), then 20 reviews of the 4.97 MB pod together (RSS right after and 2 s later);
  and a second process with a cold cache given 100 reviews at once naming the same 6 NADs (NAD reads counted from
  the stand-in API server's request log).

Writes bench/results/footprint.json (a full run only). The limit checked is 100 MB RSS after start, after the
ordinary requests and after the settle, and after each level of reviews at once.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from vhostplug.cni.install import install_shim
from vhostplug.lab.kubelet import LabKubelet
from vhostplug_testsupport.noopdataplane import NOOP_VHOSTPLUG
from vhostplug_testsupport.webhook import nad_hits, post_at_once, review_body, running_api, start_webhook

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "footprint.json"
LIMIT_MB = 100.0


def status_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of ``pid`` in MB (10^6 bytes)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = round(int(value.split()[0]) * 1024 / 1e6, 1)
    return out


def rss(pid: int) -> float:
    return status_mb(pid)["VmRSS"]


# ---- webhook ---------------------------------------------------------------------------------------------------------
def ordinary_pod(i: int) -> dict[str, Any]:
    return {
        "metadata": {"name": f"app-{i}", "annotations": {"k8s.v1.cni.cncf.io/networks": "vhu-net, plain@net2"}},
        "spec": {"containers": [{"name": "app", "image": "dpdk"}, {"name": "sidecar", "image": "exporter"}]},
    }


def large_pod() -> dict[str, Any]:
    env = [{"name": f"VAR_{i:05d}", "value": "v" * 48} for i in range(60_000)]
    pod = ordinary_pod(0)
    pod["spec"]["containers"][0]["env"] = env
    return pod


class Client:
    """One kept-alive HTTPS connection to the webhook, reopened when the server closed it."""

    def __init__(self, port: int, ctx: ssl.SSLContext) -> None:
        self.port, self.ctx = port, ctx
        self.conn: http.client.HTTPSConnection | None = None

    def post(self, body: bytes) -> int:
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=60)
            try:
                self.conn.request("POST", "/mutate", body=body, headers={"Content-Type": "application/json"})
                resp = self.conn.getresponse()
                resp.read()
                return resp.status
            except (ConnectionError, http.client.HTTPException, ssl.SSLError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def send_raw(port: int, ctx: ssl.SSLContext, head: bytes, body_bytes: int) -> bytes:
    """Send a head and up to ``body_bytes`` of body (stop when the server has answered/closed); the answer's start."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    with raw, ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(head)
        chunk = b"x" * (1 << 20)
        sent = 0
        try:
            while sent < body_bytes:
                tls.sendall(chunk[: min(len(chunk), body_bytes - sent)])
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        try:
            return tls.recv(64)
        except (ConnectionResetError, ssl.SSLError):
            return b""


def concurrent_reviews(port: int, ctx: ssl.SSLContext, bodies: list[bytes]) -> tuple[dict[int, int], float]:
    """Every review sent at once on its own TLS connection: the HTTP statuses counted, and the seconds to the last
    answer."""
    answers, seconds = post_at_once(port, ctx, bodies)
    counts: dict[int, int] = {}
    for status, _ in answers:
        counts[status] = counts.get(status, 0) + 1
    return counts, round(seconds, 2)


def bench_concurrency(work: Path, levels: list[int]) -> dict[str, Any]:
    """RSS after 50/100/200/400 reviews sent at once (one process, rising levels, each on its own connections), then
    after 20 reviews of a 5 MB pod at once (and 2 s later); and the API reads a cold cache makes when 100 reviews
    naming the same 6 NADs arrive at once (a second process)."""
    six = [f"net{i}" for i in range(6)]
    nads: dict[tuple[str, str], dict[str, str] | int] = {
        ("default", "vhu-net"): {"k8s.v1.cni.cncf.io/resourceName": "vhostplug.io/vhostuser"},
        ("default", "plain"): {},
        **{("default", n): {"k8s.v1.cni.cncf.io/resourceName": "vhostplug.io/vhostuser"} for n in six},
    }
    tls_dir = work / "tls"
    tls_dir.mkdir()
    out: dict[str, Any] = {"levels": {}}
    with running_api(tls_dir, nads) as api:
        hook = start_webhook(api, tls_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            pid = hook.proc.pid
            out["start_mb"] = rss(pid)
            for level in levels:
                bodies = [json.dumps(review_body(ordinary_pod(i), uid=f"c{level}-{i}")).encode() for i in range(level)]
                statuses, seconds = concurrent_reviews(hook.port, hook.context(), bodies)
                out["levels"][str(level)] = {"rss_mb": rss(pid), "statuses": statuses, "seconds": seconds}
            big = json.dumps(review_body(large_pod(), uid="big")).encode()
            statuses, seconds = concurrent_reviews(hook.port, hook.context(), [big] * 20)
            out["large_at_once"] = {
                "reviews": 20,
                "bytes_each": len(big),
                "statuses": statuses,
                "seconds": seconds,
                "rss_mb": rss(pid),
            }
            del big
            time.sleep(2)
            out["large_at_once"]["after_settle_mb"] = rss(pid)
            out["peak_mb"] = status_mb(pid)["VmHWM"]
        finally:
            hook.stop()
        hook = start_webhook(api, tls_dir, stem="cold", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            before = sum(nad_hits(api, "default", n) for n in six)
            pod = ordinary_pod(0)
            pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"] = ", ".join(six)
            bodies = [json.dumps(review_body(pod, uid=f"cold-{i}")).encode() for i in range(100)]
            statuses, seconds = concurrent_reviews(hook.port, hook.context(), bodies)
            out["cold_cache"] = {
                "reviews": 100,
                "nads": 6,
                "api_reads": sum(nad_hits(api, "default", n) for n in six) - before,
                "statuses": statuses,
                "seconds": seconds,
            }
        finally:
            hook.stop()
    return out


def bench_webhook(work: Path, ordinary: int) -> dict[str, Any]:
    nads: dict[tuple[str, str], dict[str, str] | int] = {
        ("default", "vhu-net"): {"k8s.v1.cni.cncf.io/resourceName": "vhostplug.io/vhostuser"},
        ("default", "plain"): {},
    }
    tls_dir = work / "tls"
    tls_dir.mkdir()
    out: dict[str, Any] = {}
    with running_api(tls_dir, nads) as api:
        hook = start_webhook(api, tls_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            pid = hook.proc.pid
            time.sleep(1)
            out["start_mb"] = rss(pid)
            client = Client(hook.port, hook.context())
            for i in range(ordinary):
                status = client.post(json.dumps(review_body(ordinary_pod(i), uid=f"o{i}")).encode())
                assert status == 200, status
            out["after_ordinary_mb"] = rss(pid)
            big = json.dumps(review_body(large_pod(), uid="big")).encode()
            out["large_pod_bytes"] = len(big)
            answers = []
            for _ in range(5):
                answers.append(client.post(big))
            del big
            for _ in range(3):
                head = b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Length: 9000000\r\n\r\n"
                answers.append(int(send_raw(hook.port, hook.context(), head, 9_000_000)[9:12] or 0))
            head = b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Length: 200000000\r\n\r\n"
            answers.append(int(send_raw(hook.port, hook.context(), head, 16_000_000)[9:12] or 0))
            for _ in range(2):
                conn = http.client.HTTPSConnection("127.0.0.1", hook.port, context=hook.context(), timeout=60)
                try:
                    conn.request("POST", "/mutate", body=iter([b"x" * 1_000_000] * 9), encode_chunked=True)
                    answers.append(conn.getresponse().status)
                except (ConnectionError, ssl.SSLError):
                    answers.append(0)  # answered and closed while we were sending
                finally:
                    conn.close()
            out["large_answers"] = answers
            out["after_burst_mb"] = rss(pid)
            time.sleep(2)
            out["after_settle_mb"] = rss(pid)
            client = Client(hook.port, hook.context())
            for i in range(100):
                assert client.post(json.dumps(review_body(ordinary_pod(i), uid=f"p{i}")).encode()) == 200
            out["after_more_ordinary_mb"] = rss(pid)
            out["peak_mb"] = status_mb(pid)["VmHWM"]
        finally:
            hook.stop()
    return out


# ---- agent -----------------------------------------------------------------------------------------------------------
def bench_agent(work: Path, ordinary: int) -> dict[str, Any]:
    dp_dir, socket_root, listen = work / "dp", work / "s", work / "agent.sock"
    config = {
        "listen": str(listen),
        "socketRoot": str(socket_root),
        "devinfoDir": str(work / "di"),
        "devicePluginDir": str(dp_dir),
        "devicePlugin": {},
        "dataplane": {"backend": "noop"},
        "bridges": {"allowed": ["br-fp"]},  # node policy: the bridge the benchmark's network names
        "stateDir": str(work / "state"),
    }
    (work / "agent.json").write_text(json.dumps(config))
    shim = install_shim(work / "bin")
    conf = {
        "cniVersion": "1.1.0",
        "name": "vhnet",
        "type": "vhostplug",
        "agentSocket": str(listen),
        "socketRoot": str(socket_root),
        "bridge": "br-fp",
    }
    base_env = {"CNI_NETNS": "/var/run/netns/fp", "CNI_PATH": str(shim.parent), "PATH": "/usr/bin:/bin"}

    def cni(command: str, cid: str, stdin: bytes) -> int:
        env = {**base_env, "CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_IFNAME": "net1"}
        return subprocess.run([str(shim)], input=stdin, env=env, capture_output=True, timeout=60).returncode

    out: dict[str, Any] = {}
    with LabKubelet(dp_dir) as kubelet:
        proc = subprocess.Popen(
            [*NOOP_VHOSTPLUG, "agent", "--config", str(work / "agent.json")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            kubelet.wait_registered("vhostplug.io/vhostuser", timeout=30)
            deadline = time.monotonic() + 30
            while not listen.is_socket():
                assert time.monotonic() < deadline and proc.poll() is None, "agent did not start"
                time.sleep(0.05)
            time.sleep(1)
            out["start_mb"] = rss(proc.pid)
            codes: dict[int, int] = {}
            text = json.dumps(conf).encode()
            for i in range(ordinary // 2):
                for command in ("ADD", "DEL"):
                    code = cni(command, f"fp{i:06d}", text)
                    codes[code] = codes.get(code, 0) + 1
            out["ordinary_exit_codes"] = codes
            out["after_ordinary_mb"] = rss(proc.pid)
            large_codes: dict[str, dict[int, int]] = {}
            for size, count in ((200_000, 20), (3 << 20, 10), (6 << 20, 5)):
                padded = json.dumps({**conf, "padding": "p" * size}).encode()
                codes = large_codes.setdefault(str(size), {})
                for i in range(count):
                    code = cni("ADD", f"big{size}-{i:04d}", padded)
                    codes[code] = codes.get(code, 0) + 1
                    cni("DEL", f"big{size}-{i:04d}", text)
            out["large_exit_codes_by_size"] = large_codes
            out["after_burst_mb"] = rss(proc.pid)
            time.sleep(2)
            out["after_settle_mb"] = rss(proc.pid)
            for i in range(50):
                cni("ADD", f"more{i:04d}", text)
                cni("DEL", f"more{i:04d}", text)
            out["after_more_ordinary_mb"] = rss(proc.pid)
            out["peak_mb"] = status_mb(proc.pid)["VmHWM"]
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return out


def within(result: dict[str, Any]) -> bool:
    keys = ("start_mb", "after_ordinary_mb", "after_settle_mb", "after_more_ordinary_mb")
    return all(result[k] <= LIMIT_MB for k in keys)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ordinary", type=int, default=1000, help="ordinary requests per component")
    ap.add_argument("--only", choices=("agent", "webhook", "concurrency"), default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vhp-fp-", dir="/tmp"))
    try:
        result: dict[str, Any] = {
            "benchmark": "footprint",
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()},
            "limit_mb": LIMIT_MB,
            "ordinary_requests": args.ordinary,
        }
        for name, fn in (("webhook", bench_webhook), ("agent", bench_agent)):
            if args.only in (None, name):
                (work / name).mkdir()
                result[name] = fn(work / name, args.ordinary)
                result[name]["within_limit"] = within(result[name])
                print(name, json.dumps(result[name]), flush=True)
        if args.only in (None, "webhook", "concurrency"):
            (work / "concurrency").mkdir()
            conc = bench_concurrency(work / "concurrency", [50, 100, 200, 400])
            conc["within_limit"] = all(v["rss_mb"] <= LIMIT_MB for v in conc["levels"].values())
            result["webhook_concurrency"] = conc
            print("webhook_concurrency", json.dumps(conc), flush=True)
        if args.only is None:
            OUT.parent.mkdir(parents=True, exist_ok=True)
            OUT.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
        names = ("webhook", "agent", "webhook_concurrency")
        return 0 if all(result[n]["within_limit"] for n in names if n in result) else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
