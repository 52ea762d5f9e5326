"""What the device plugin's config sections (and the vDPA pools the CNI and DRA read too) are made of: the strict
camelCase model, the extended resource name check and the PCI address pattern.

The sections themselves live with their kinds (``deviceplugin/vhostuser``, ``socketroot``, ``vdpa``) and the pools with
vDPA discovery (``vdpa/discovery``); ``deviceplugin/config`` assembles them.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

#: ``<domain>/<name>``: a DNS subdomain, then a qualified name of at most 63 characters (extended resource names).
_RESOURCE_RE = re.compile(
    r"^(?=.{1,253}/)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/"
    r"(?=.{1,63}$)[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
#: a PCI address as sysfs names it (``0000:65:00.2``): the one definition, used by config checks and discovery
PCI_RE = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")


def check_resource_name(value: str) -> str:
    """An extended resource name ``<domain>/<name>`` outside ``kubernetes.io``, else ``ValueError``."""
    if not _RESOURCE_RE.match(value):
        raise ValueError(
            f"{value!r} is not an extended resource name of the form <domain>/<name> "
            "(lower-case DNS domain, name of at most 63 letters, digits, '-', '_' or '.')"
        )
    if value.split("/", 1)[0].endswith("kubernetes.io"):
        raise ValueError(f"{value!r}: the kubernetes.io domain is reserved")
    return value


class SectionModel(BaseModel):
    """Strict (unknown keys refused), camelCase keys, frozen. A kind's section also offers ``resource_names()``."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)
