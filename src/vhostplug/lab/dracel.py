"""DRA device selectors (``resource.k8s.io`` CEL, KEP-4381) evaluated with a real CEL library (``cel-python``) against
a device as a ResourceSlice publishes it, for the lab's stand-in scheduler and tests.

The environment is the one kube-scheduler gives a DeviceClass's or a claim's ``selectors[].cel.expression``: one
variable ``device`` with

- ``device.driver``: the slice's driver;
- ``device.attributes[domain][id]``: the device's attributes by domain (an unqualified id belongs to the driver's
  domain, ``other.domain/id`` to ``other.domain``) as int, bool or string (a ``version`` attribute as its string);
- ``device.capacity[domain][id]``: its capacities as quantities (an int, or a double below one unit) with
  ``quantity("1Gi")``, ``a.compareTo(b)``, ``a.isGreaterThan(b)``, ``a.isLessThan(b)``, ``a.asInteger()``,
  ``a.asApproximateFloat()``;
- ``device.allowMultipleAllocations``.

A domain the expression names but the device does not have reads as an empty map (``"x" in device.attributes["d"]``
is false), as in Kubernetes; a missing attribute is a runtime error. Compile and runtime errors and a result that is
not a bool raise :class:`CelError` naming the expression, as kube-scheduler reports them for the claim.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from fractions import Fraction
from typing import Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel

JSON = dict[str, Any]
_DOMAIN_REF = re.compile(r"""\b(?:attributes|capacity)\s*\[\s*(?:"([^"\\]*)"|'([^'\\]*)')\s*\]""")
_QUANTITY = re.compile(
    r"^([+-]?[0-9]+(?:\.[0-9]*)?|[+-]?\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$"
)
_SUFFIX = {
    "": Fraction(1), "n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000),
    "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12), "P": Fraction(10**15),
    "E": Fraction(10**18), "Ki": Fraction(2**10), "Mi": Fraction(2**20), "Gi": Fraction(2**30),
    "Ti": Fraction(2**40), "Pi": Fraction(2**50), "Ei": Fraction(2**60),
}  # fmt: skip


class CelError(ValueError):
    """A selector that does not compile, fails at runtime, or does not answer a bool."""


def parse_quantity(text: str) -> Fraction:
    """A Kubernetes quantity (``1Gi``, ``500m``, ``1e3``) as an exact number."""
    m = _QUANTITY.match(text.strip())
    if not m:
        raise CelError(f"{text!r} is not a quantity")
    number, suffix = Fraction(m[1]), m[2] or ""
    if suffix[:1] in ("e", "E"):
        return number * Fraction(10) ** int(suffix[1:])
    return number * _SUFFIX[suffix]


def _cel_quantity(value: Fraction) -> Any:
    return celtypes.IntType(int(value)) if value.denominator == 1 else celtypes.DoubleType(float(value))


def _num(value: Any) -> Fraction:
    if isinstance(value, celtypes.StringType):
        return parse_quantity(str(value))
    return Fraction(value)


def _compare(a: Any, b: Any) -> Any:
    x, y = _num(a), _num(b)
    return celtypes.IntType((x > y) - (x < y))


FUNCTIONS: dict[str, Any] = {
    "quantity": lambda text: _cel_quantity(parse_quantity(str(text))),
    "compareTo": _compare,
    "isGreaterThan": lambda a, b: celtypes.BoolType(_num(a) > _num(b)),
    "isLessThan": lambda a, b: celtypes.BoolType(_num(a) < _num(b)),
    "asInteger": lambda a: celtypes.IntType(int(_num(a))),
    "asApproximateFloat": lambda a: celtypes.DoubleType(float(_num(a))),
}


def _value(attr: JSON) -> Any:
    for key in ("int", "bool", "string", "version"):
        if key in attr:
            return attr[key]
    raise CelError(f"attribute {attr!r} has no int, bool, string or version value")


def _by_domain(driver: str, items: JSON, convert: Any, domains: Iterable[str]) -> JSON:
    out: JSON = {d: {} for d in domains}
    for name, value in (items or {}).items():
        domain, _, ident = name.rpartition("/")
        out.setdefault(domain or driver, {})[ident] = convert(value)
    return out


def device_variable(driver: str, device: JSON, domains: Iterable[str] = ()) -> Any:
    """The CEL ``device`` variable for one published device (``domains``: read as empty maps when missing)."""
    domains = list(domains)
    attributes = _by_domain(driver, device.get("attributes") or {}, _value, domains)
    capacity = _by_domain(driver, device.get("capacity") or {}, lambda c: str(c.get("value", "0")), domains)
    value: Any = json_to_cel(
        {
            "driver": driver,
            "attributes": attributes,
            "allowMultipleAllocations": bool(device.get("allowMultipleAllocations", False)),
        }
    )
    value[celtypes.StringType("capacity")] = celtypes.MapType(
        {
            celtypes.StringType(d): celtypes.MapType(
                {celtypes.StringType(k): _cel_quantity(parse_quantity(v)) for k, v in caps.items()}
            )
            for d, caps in capacity.items()
        }
    )
    return value


@functools.lru_cache(maxsize=1024)
def _program(expression: str) -> tuple[Any, tuple[str, ...]]:
    env = celpy.Environment()
    try:
        ast = env.compile(expression)
    except Exception as exc:  # CELParseError and friends
        raise CelError(f"selector {expression!r} does not compile: {exc}") from None
    domains = tuple(dict.fromkeys(a or b for a, b in _DOMAIN_REF.findall(expression)))
    return env.program(ast, functions=FUNCTIONS), domains


def compile_selector(expression: str) -> None:
    """Raise :class:`CelError` when ``expression`` does not compile."""
    _program(expression)


def matches(expression: str, driver: str, device: JSON) -> bool:
    """Whether the published ``device`` of ``driver`` satisfies the selector ``expression``."""
    program, domains = _program(expression)
    try:
        result = program.evaluate({"device": device_variable(driver, device, domains)})
    except CelError:
        raise
    except Exception as exc:  # CELEvalError: a missing attribute, a type mismatch
        raise CelError(f"selector {expression!r} on device {device.get('name')!r}: {exc}") from None
    if not isinstance(result, celtypes.BoolType):
        raise CelError(f"selector {expression!r} answers {type(result).__name__}, not a bool")
    return bool(result)
