"""Find this container's (and its pod sandbox's) IDs from ``/proc/self/mountinfo`` and ``/proc/self/cgroup``.

kuryr-style config files are named ``<container_id>-<ifname>`` where the ID is the CNI's ``CNI_CONTAINERID``: the pod
sandbox. A container sees it in the source of the ``/etc/hostname`` and ``/etc/resolv.conf`` bind mounts, which the
runtime keeps in the sandbox's folder (docker ``.../containers/<id>/hostname``, containerd ``.../sandboxes/<id>/hostname``,
CRI-O ``.../overlay-containers/<id>/userdata/hostname``). Candidates come best first: sandbox-folder IDs, then other
``/containers/<id>/`` IDs, then the cgroup's (the app container's own ID). Standard library only.
"""

from __future__ import annotations

import re
from pathlib import Path

_ID = r"[0-9a-f]{64}"
_SANDBOX_FILE = re.compile(rf"/({_ID})/(?:userdata/)?(?:hostname|resolv\.conf|hosts)$")
_CONTAINERS_DIR = re.compile(rf"/(?:containers|sandboxes|overlay-containers)/({_ID})(?:/|$)")
_ANY_ID = re.compile(rf"(?:^|[/\-:.])({_ID})(?:\.scope)?(?:/|$)")


def _unescape_mountinfo(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def ids_from_mountinfo(text: str) -> list[str]:
    """Candidate IDs from a mountinfo text, best first: the owner of /etc/hostname, then resolv.conf, hosts, others."""
    ranked: list[tuple[int, int, str]] = []
    rank_of = {"/etc/hostname": 0, "/etc/resolv.conf": 1, "/etc/hosts": 2}
    for n, line in enumerate(text.splitlines()):
        fields = line.split()
        if len(fields) < 5:
            continue
        root, mount_point = _unescape_mountinfo(fields[3]), _unescape_mountinfo(fields[4])
        if m := _SANDBOX_FILE.search(root):
            ranked.append((rank_of.get(mount_point, 3), n, m.group(1)))
        elif m := _CONTAINERS_DIR.search(root):
            ranked.append((3, n, m.group(1)))
    return _dedup([cid for _, _, cid in sorted(ranked)])


def ids_from_cgroup(text: str) -> list[str]:
    """Container IDs named in a /proc/<pid>/cgroup text (v1 or v2; docker, cri-containerd, crio scopes)."""
    found: list[str] = []
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        for part in path.split("/"):
            if m := _ANY_ID.search("/" + part):
                found.append(m.group(1))
    return _dedup(found)


def _dedup(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def candidate_ids(root: Path = Path("/")) -> tuple[list[str], list[str]]:
    """Candidate container IDs (best first) and the files looked at, reading under ``root``."""
    looked: list[str] = []
    ids: list[str] = []
    for rel, parse in (("proc/self/mountinfo", ids_from_mountinfo), ("proc/self/cgroup", ids_from_cgroup)):
        path = root / rel
        looked.append(str(path))
        try:
            ids += parse(path.read_text(errors="replace"))
        except OSError:
            continue
    return _dedup(ids), looked
