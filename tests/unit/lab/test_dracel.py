"""DRA CEL selectors through cel-python: the ``device`` variable by domain, qualified attributes, capacities as
quantities, missing domains read as empty maps, and errors for what kube-scheduler refuses."""

from __future__ import annotations

from fractions import Fraction

import pytest

from vhostplug.lab.dracel import CelError, compile_selector, matches, parse_quantity

DRIVER = "vhostuser.vhostplug.io"
DEVICE = {
    "name": "vhu-br-vhost-0",
    "attributes": {
        "bridge": {"string": "br-vhost"},
        "numaNode": {"int": 1},
        "serverMode": {"bool": True},
        "firmware": {"version": "1.2.3"},
        "resource.kubernetes.io/pcieRoot": {"string": "pci0000:00"},
    },
    "capacity": {"queues": {"value": "8"}, "memory": {"value": "2Gi"}, "share": {"value": "500m"}},
}
A = 'device.attributes["vhostuser.vhostplug.io"]'
C = 'device.capacity["vhostuser.vhostplug.io"]'


@pytest.mark.parametrize(
    ("expression", "want"),
    [
        ('device.driver == "vhostuser.vhostplug.io"', True),
        ('device.driver == "gpu.example.com"', False),
        (f'{A}.bridge == "br-vhost" && {A}.serverMode', True),
        (f"{A}.numaNode == 0", False),
        (f'{A}.firmware == "1.2.3"', True),
        ('device.attributes["resource.kubernetes.io"].pcieRoot == "pci0000:00"', True),
        ('"bridge" in device.attributes["other.example.com"]', False),  # a domain it lacks: an empty map
        (f'"vlan" in {A}', False),
        (f"{C}.queues >= 4", True),
        (f'{C}.memory.compareTo(quantity("1Gi")) > 0', True),
        (f'{C}.memory.isLessThan(quantity("1Gi"))', False),
        (f'{C}.share.isGreaterThan(quantity("100m"))', True),
        (f"{C}.memory.asInteger() == 2147483648", True),
        ("!device.allowMultipleAllocations", True),
    ],
)
def test_selectors(expression: str, want: bool) -> None:
    assert matches(expression, DRIVER, DEVICE) is want


def test_errors_name_the_expression() -> None:
    with pytest.raises(CelError, match="does not compile"):
        compile_selector("device.driver ==")
    with pytest.raises(CelError, match="vhu-br-vhost-0"):
        matches(f"{A}.vlan == 1", DRIVER, DEVICE)  # a missing attribute is a runtime error, as in Kubernetes
    with pytest.raises(CelError, match="not a bool"):
        matches("device.driver", DRIVER, DEVICE)


def test_quantities() -> None:
    assert parse_quantity("1Gi") == 2**30
    assert parse_quantity("1.5k") == 1500
    assert parse_quantity("250m") == Fraction(1, 4)
    assert parse_quantity("1e3") == 1000
    with pytest.raises(CelError):
        parse_quantity("1 Gi")
