"""Which way imports point inside `services/` (DESIGN: the simulator may depend on our
ExLlamaV2 server, never the reverse), checked on the source: no cycle between modules, and no
import of a project module hidden inside a function or behind `TYPE_CHECKING` to dodge one."""

from __future__ import annotations

from tests.services.import_graph import find_cycle, read_services

MODULES = read_services()


def _project_edges() -> dict[str, set[str]]:
    return {
        name: {i.target for i in info.imports if i.target in MODULES and i.target != name}
        for name, info in MODULES.items()
    }


def _reachable(start: str, edges: dict[str, set[str]]) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_the_graph_was_read() -> None:
    assert "services.exllamav2.app" in MODULES and "services.sim.vllm_app" in MODULES
    app_imports = {i.target for i in MODULES["services.exllamav2.app"].imports}
    assert "services.openai_http" in app_imports  # the reader sees `from x import y` forms


def test_no_project_import_inside_a_function_or_type_checking_block() -> None:
    hidden = [
        f"{info.path.name}:{i.line} imports {i.target} ({i.where})"
        for info in MODULES.values()
        for i in info.imports
        if i.where != "module" and i.target.split(".")[0] == "services"
    ]
    assert hidden == [], "an import hidden from the module level usually hides a cycle"


def test_services_modules_form_no_cycle() -> None:
    cycle = find_cycle(_project_edges())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_exllamav2_server_never_depends_on_the_simulator() -> None:
    edges = _project_edges()
    for name in MODULES:
        if name.startswith("services.exllamav2"):
            bad = sorted(m for m in _reachable(name, edges) if m.startswith("services.sim"))
            assert bad == [], f"{name} reaches {bad}"
            direct = {i.target.split(".")[0] for i in MODULES[name].imports}
            assert "yaml" not in direct, f"{name} imports yaml: not in the server image"


def test_shared_modules_belong_to_neither_side() -> None:
    edges = _project_edges()
    for name, info in MODULES.items():
        if info.path.parent.name == "services" and info.path.stem != "__init__":  # services/x.py
            reached = _reachable(name, edges)
            assert not any(m.startswith(("services.sim", "services.exllamav2")) for m in reached)
