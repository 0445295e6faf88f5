"""The core's layout: imports between its files run one way.

Each file of ``src/core/`` is a node; it points at every file of the core it
names (``crate::core::…`` and ``super::…`` paths, and the files a folder's
``mod.rs`` uses or re-exports). Test modules are left out. No file may reach itself again through these edges, and nothing in the
core may name the host that runs it (``proxy_wasm``).
"""

from __future__ import annotations

import re
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "src" / "core"


def module_of(path: Path) -> str:
    parts = list(path.relative_to(CORE).with_suffix("").parts)
    if parts[-1] == "mod":
        parts.pop()
    return "::".join(parts)


def without_tests(text: str) -> str:
    cut = [m.start() for m in re.finditer(r"#\[cfg\(test\)\]\n(pub\(crate\) )?mod tests \{", text)]
    return text[: min(cut)] if cut else text


def resolve(name: str, modules: set[str]) -> str | None:
    """The longest known module that ``name`` (a path without its item)
    begins with."""
    parts = name.split("::")
    for end in range(len(parts), 0, -1):
        candidate = "::".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def import_graph() -> dict[str, set[str]]:
    files = {module_of(p): p for p in CORE.rglob("*.rs") if p.name != "tests.rs"}
    modules = set(files)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        text = without_tests(path.read_text())
        parent = module.rsplit("::", 1)[0] if "::" in module else ""
        targets = set()
        for m in re.finditer(r"crate::core::((?:\w+::)*\w+)", text):
            targets.add(resolve(m.group(1), modules))
        for m in re.finditer(r"(?<![\w:])super::((?:\w+::)*\w+|\{)", text):
            base = parent if path.name != "mod.rs" else module.rsplit("::", 1)[0] if "::" in module else ""
            if m.group(1) == "{":
                targets.add(base or None)
                continue
            full = f"{base}::{m.group(1)}" if base else m.group(1)
            targets.add(resolve(full, modules) or (base or None))
        # `use child::…` and `pub use child::…` in a folder's mod.rs.
        if path.name == "mod.rs":
            for m in re.finditer(r"(?m)^(?:pub )?use (\w+)::", text):
                if m.group(1) not in ("crate", "super", "std", "core", "self"):
                    child = f"{module}::{m.group(1)}" if module else m.group(1)
                    targets.add(resolve(child, modules))
        graph[module] = {t for t in targets if t and t != module}
    return graph


def cycle_from(graph: dict[str, set[str]], start: str) -> list[str] | None:
    stack = [(start, [start])]
    seen = set()
    while stack:
        node, path = stack.pop()
        for nxt in graph.get(node, ()):
            if nxt == start:
                return path + [start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, path + [nxt]))
    return None


def test_no_file_of_the_core_imports_itself_around_a_circle():
    graph = import_graph()
    assert "flow::request" in graph and "oidc::keys" in graph, sorted(graph)
    cycles = [c for m in sorted(graph) if (c := cycle_from(graph, m))]
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_check_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycle_from(graph, "a") == ["a", "b", "c", "a"]
    assert cycle_from(graph, "d") is None


def test_the_core_never_names_its_host():
    for path in CORE.rglob("*.rs"):
        assert "proxy_wasm" not in path.read_text(), path
