"""The claims docs/architecture.md makes about the tree, checked on the code itself (read as AST, nothing imported
but the registries):

- no import circle between modules, type-only and function-level imports included;
- the seam (``protocols.py``) names no implementation module; ``vdpa/`` imports neither ``cni/`` nor
  ``deviceplugin/``; ``cni/`` imports no concrete ``dataplane`` module;
- the OVS vocabulary (external_ids keys, option and other_config keys, vhost-user port types) is spelled only in
  ``ovsvhost.py``;
- each registry (``BACKENDS``, ``KINDS``, ``PLANNERS``, ``PHASES``) is the only place its members are listed.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from tests.conftest import REPO

SRC = REPO / "src"
PKG = SRC / "vhostplug"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _generated(path: Path) -> bool:
    return path.name.endswith(("_pb2.py", "_pb2_grpc.py"))


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PKG.rglob("*.py")) if not _generated(p)}


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def _imports(name: str) -> set[str]:
    """Every vhostplug module ``name`` imports anywhere in its text (top level, TYPE_CHECKING, inside functions)."""
    path = _modules()[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(_tree(path)):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            # ``from pkg import mod`` imports the module ``pkg.mod`` when there is one
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in _modules() or a.name.endswith("_pb2") else base
                for a in node.names
            ]
        for target in targets:
            if target.endswith(("_pb2", "_pb2_grpc")):
                continue  # generated stubs import nothing of ours
            while target and target not in _modules():
                target = target.rpartition(".")[0]  # ``import a.b.c`` of a name inside a module
            if target.startswith("vhostplug") and target != name:
                out.add(target)
    return out


def _graph() -> dict[str, set[str]]:
    return {name: _imports(name) for name in _modules()}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_circle_finder_finds_a_circle() -> None:
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


def test_the_import_reader_sees_type_only_and_late_imports() -> None:
    deps = _imports("vhostplug.protocols")
    assert "vhostplug.model" in deps  # top level
    assert "vhostplug.deviceplugin.api" not in deps  # generated stubs are not modules of this check
    assert "vhostplug.lab.ovsdb" in _imports("vhostplug.lab.migration.scenario")


def test_no_import_circle() -> None:
    assert _circles(_graph()) == []


DOC = REPO / "docs" / "architecture.md"


def _layers() -> list[set[str]]:
    """docs/architecture.md's Layers table, top row first: the top-level packages and modules of each row."""
    text = DOC.read_text()
    start = text.index("## Layers")
    rows = [line for line in text[start : text.index("\n## ", start + 1)].splitlines() if line.startswith("| ")][1:]
    return [{n.rstrip("/").removesuffix(".py") for n in re.findall(r"`([a-z_]+(?:/|\.py))`", row.split("|")[2])} for row in rows]


def _unit(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def test_every_package_has_one_layer() -> None:
    layers = _layers()
    placed = [u for layer in layers for u in layer]
    units = {_unit(m) for m in _modules() if m != "vhostplug"}
    assert sorted(placed) == sorted(units)


def test_every_import_runs_down_the_layers() -> None:
    rank = {u: i for i, layer in enumerate(_layers()) for u in layer}
    wrong = sorted(
        f"{m} -> {d}"
        for m, deps in _graph().items()
        for d in deps
        if m != "vhostplug" and _unit(m) != _unit(d) and rank[_unit(d)] <= rank[_unit(m)]
    )
    assert wrong == []


def test_the_seam_names_no_implementation() -> None:
    assert _imports("vhostplug.protocols") <= {"vhostplug.model", "vhostplug.fsutil"}


def _imports_under(prefix: str) -> Iterator[tuple[str, str]]:
    for name in _modules():
        if name == prefix or name.startswith(prefix + "."):
            for dep in _imports(name):
                yield name, dep


def test_vdpa_is_imported_never_imports_back() -> None:
    back = [(m, d) for m, d in _imports_under("vhostplug.vdpa") if d.startswith(("vhostplug.cni", "vhostplug.deviceplugin"))]
    assert back == []


def test_cni_imports_no_concrete_dataplane_module() -> None:
    assert [(m, d) for m, d in _imports_under("vhostplug.cni") if d.startswith("vhostplug.dataplane")] == []


# -- the OVS vocabulary --------------------------------------------------------------------------------------------
def _literals(path: Path) -> Iterator[tuple[int, str]]:
    """String constants of a module, docstrings left out."""
    tree = _tree(path)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value


def _vocabulary() -> set[str]:
    """ovsvhost's keys and port types: every constant named ID_*, OPTION_*, OTHER_CONFIG_*, BRIDGE_MARK, TYPE_OVS_*."""
    words = set()
    for node in _tree(PKG / "ovsvhost.py").body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            name = node.targets[0].id if isinstance(node.targets[0], ast.Name) else ""
            if re.match(r"(ID_|OPTION_|OTHER_CONFIG_|BRIDGE_MARK|TYPE_OVS_)", name):
                words.add(node.value.value)
    return words


#: ``vhostplug-*`` strings that are not OVS vocabulary, each with what it names
NOT_OVS = {
    "vhostplug-links": "the webhook's volume of stable links (a pod volume name)",
    "vhostplug-podnetinfo": "the webhook's downward API volume (a pod volume name)",
    "vhostplug-vdpa": "the lab's vDPA NetworkAttachmentDefinition",
    "vhostplug-vms": "the lab's VM NetworkAttachmentDefinition",
    "vhostplug-pods": "the lab's pod NetworkAttachmentDefinition",
    "vhostplug-dra": "the DRA driver's HTTP User-Agent",
}


def test_the_ovs_vocabulary_is_spelled_only_in_ovsvhost() -> None:
    words = _vocabulary()
    assert {"iface-id", "attached-mac", "vhostplug-attachment", "vhostplug-vdpa-device", "dpdkvhostuserclient"} <= words
    found = []
    for name, path in _modules().items():
        if name == "vhostplug.ovsvhost":
            continue
        for line, text in _literals(path):
            if text in words or (re.fullmatch(r"vhostplug-[a-z0-9-]+", text) and text not in NOT_OVS):
                found.append(f"{path.relative_to(REPO)}:{line}: {text!r}")
    assert found == []


# -- registries ----------------------------------------------------------------------------------------------------
Member = tuple[str, str]  # ("key", a registry key as a string) or ("name", an identifier the registry holds)


def _registries() -> dict[str, tuple[str, set[Member]]]:
    """Registry -> (its module, its members: keys, and the functions or classes they register)."""
    from vhostplug.cni.planning import PLANNERS
    from vhostplug.dataplane.registry import BACKENDS
    from vhostplug.deviceplugin.kinds import KINDS
    from vhostplug.lab.demo import PHASES

    def keys(d: dict[str, object]) -> set[Member]:
        return {("key", k) for k in d}

    def names(*objs: object) -> set[Member]:
        return {("name", getattr(o, "__name__", "")) for o in objs}

    return {
        "BACKENDS": ("vhostplug.dataplane.registry", keys(BACKENDS) | names(*BACKENDS.values())),
        # a kind's key is also its config section's name, which configs spell: its section model names it here
        "KINDS": ("vhostplug.deviceplugin.kinds", names(*(k.section for k in KINDS.values()))),
        "PLANNERS": ("vhostplug.cni.planning", keys(PLANNERS) | names(*PLANNERS.values())),
        "PHASES": ("vhostplug.lab.demo", names(*PHASES)),
    }


def _element_names(node: ast.AST) -> set[Member]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {("key", node.value)}
    if isinstance(node, ast.Name):
        return {("name", node.id)}
    if isinstance(node, ast.Attribute):
        return {("name", node.attr)}
    if isinstance(node, ast.Call):  # Kind(VhostUserConfig, vhostuser.build)
        return set().union(*(_element_names(a) for a in node.args)) if node.args else set()
    return set()


def _listings(path: Path, members: set[Member]) -> Iterator[int]:
    """Lines of collection displays (list, tuple, set, dict) naming two or more of ``members``."""
    for node in ast.walk(_tree(path)):
        elements: list[ast.AST] = []
        if isinstance(node, ast.List | ast.Tuple | ast.Set):
            elements = list(node.elts)
        elif isinstance(node, ast.Dict):
            elements = [k for k in node.keys if k is not None] + list(node.values)
        named: set[Member] = set().union(*(_element_names(e) for e in elements)) if elements else set()
        if len(named & members) >= 2:
            yield node.lineno


def test_the_listing_finder_finds_a_listing(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("A = {'ovs': _ovs, 'noop': _noop}\nB = (plan_kuryr,)\nC = ('plan_kuryr', 'plan_own_folder')\n")
    members = {("key", "ovs"), ("name", "_ovs"), ("name", "plan_kuryr"), ("name", "plan_own_folder")}
    assert list(_listings(path, members)) == [1]


def test_each_registry_is_the_only_place_its_members_are_listed() -> None:
    for registry, (home, members) in _registries().items():
        assert len(members) >= 2, registry
        elsewhere = [
            f"{path.relative_to(REPO)}:{line}"
            for name, path in _modules().items()
            for line in _listings(path, members)
            if name != home
        ]
        assert elsewhere == [], f"{registry}'s members are listed outside {home} too"
        assert list(_listings(_modules()[home], members)), f"{registry} is not listed in {home}"
