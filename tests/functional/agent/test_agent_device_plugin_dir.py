"""`vhostplug agent --device-plugin-dir D` without a devicePlugin block runs the device plugin in D (it used to start
none and say nothing): a lab kubelet in D sees the default resources register over real gRPC."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from vhostplug.lab.kubelet import LabKubelet
from vhostplug_testsupport.noopdataplane import NOOP_VHOSTPLUG


def test_device_plugin_dir_flag_enables_the_device_plugin(short_dir: Path) -> None:
    dp_dir = short_dir / "dp"
    config = {
        "listen": str(short_dir / "agent.sock"),
        "socketRoot": str(short_dir / "s"),
        "devinfoDir": str(short_dir / "di"),
        "dataplane": {"backend": "noop"},
    }
    path = short_dir / "agent.json"
    path.write_text(json.dumps(config))
    with LabKubelet(dp_dir) as kubelet:
        proc = subprocess.Popen(
            [*NOOP_VHOSTPLUG, "agent", "--config", str(path), "--device-plugin-dir", str(dp_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            kubelet.wait_registered("vhostplug.io/vhostuser", timeout=30)
            devices = kubelet.wait_for("vhostplug.io/vhostuser", lambda d: len(d) > 0, timeout=30)
            assert len(devices) == 64  # the device plugin's default count
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "device plugin enabled with defaults" in err


def test_without_the_flag_or_block_no_device_plugin_runs(short_dir: Path) -> None:
    dp_dir = short_dir / "dp"
    listen = short_dir / "agent.sock"
    config = {
        "listen": str(listen),
        "socketRoot": str(short_dir / "s"),
        "devicePluginDir": str(dp_dir),
        "dataplane": {"backend": "noop"},
    }
    path = short_dir / "agent.json"
    path.write_text(json.dumps(config))
    dp_dir.mkdir()
    proc = subprocess.Popen(
        [*NOOP_VHOSTPLUG, "agent", "--config", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while not listen.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert listen.exists(), "the agent did not start"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert list(dp_dir.iterdir()) == []  # a config file's devicePluginDir alone does not start the plugin
    assert "device plugin off: no devicePlugin block" in err
