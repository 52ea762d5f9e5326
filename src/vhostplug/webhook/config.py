"""The webhook's settings: which resources are ours and where the volumes it adds are mounted."""

from __future__ import annotations

from dataclasses import dataclass

from vhostplug.validation import DEFAULT_LINKS_DIR
from vhostplug.webhook.networks import MAX_NETWORKS

PODINFO_DIR = "/etc/podnetinfo"


@dataclass(frozen=True)
class WebhookConfig:
    #: a NAD's ``resourceName`` with this prefix is a vhostplug device
    resource_prefix: str = "vhostplug.io/"
    #: the shared links folder in virt-launcher pods
    links_dir: str = str(DEFAULT_LINKS_DIR)
    #: where the downward-API volume is mounted in other pods
    podinfo_dir: str = PODINFO_DIR
    max_networks: int = MAX_NETWORKS
