"""The agent's ``dra:`` section: off by default, our driver name, kubelet's folders, and clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from vhostplug.agent.config import ConfigError, load


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "agent.yaml"
    p.write_text(text)
    return p


def test_off_by_default_with_kubelets_folders(tmp_path: Path) -> None:
    dra = load(_write(tmp_path, "{}\n")).dra
    assert dra.enabled is False
    assert dra.driver_name == "vhostuser.vhostplug.io"
    assert dra.service_socket == Path("/var/lib/kubelet/plugins/vhostuser.vhostplug.io/dra.sock")
    assert dra.registration_socket == Path("/var/lib/kubelet/plugins_registry/vhostuser.vhostplug.io-reg.sock")
    assert dra.cdi_dir == Path("/var/run/cdi")
    assert dra.services == ["v1", "v1beta1"]


def test_folders_and_api_server_are_configurable(tmp_path: Path) -> None:
    text = (
        "dra:\n  enabled: true\n  pluginsDir: /tmp/p\n  registryDir: /tmp/r\n  cdiDir: /tmp/cdi\n"
        "  nodeName: node-a\n  apiServer: {url: 'http://127.0.0.1:8001/'}\n  services: [v1]\n"
    )
    dra = load(_write(tmp_path, text)).dra
    assert dra.enabled and dra.node == "node-a"
    assert dra.service_socket == Path("/tmp/p/vhostuser.vhostplug.io/dra.sock")
    assert dra.api_server.url == "http://127.0.0.1:8001"
    assert dra.services == ["v1"]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("dra: {driverName: Not_A_Domain}\n", "dra.driverName"),
        ("dra: {bogus: 1}\n", "dra.bogus: unknown key"),
        ("dra: {services: [v2]}\n", "dra.services"),
        ("dra: {cdiDir: relative/cdi}\n", "dra.cdiDir"),
        ("dra: {apiServer: {url: 'ftp://x'}}\n", "dra.apiServer.url"),
    ],
)
def test_bad_keys_are_named(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load(_write(tmp_path, text))
