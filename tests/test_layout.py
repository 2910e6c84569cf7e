"""The layout rules of the code base, checked on its source with `ast`.

- No module reads another module's private names, tests included: `obj._x` (one leading
  underscore, not a dunder) is allowed only on `self` / `cls`, or when `_x` is defined in the
  same module; the few deliberate exceptions (the pykka adapter, stdlib private APIs) are
  listed in `ALLOWED` with a reason each. `getattr(obj, "_x")` and `from m import _x` count too.
- No import cycles inside `brama/` (imports under `if TYPE_CHECKING:` and inside functions
  included); `brama/errors.py` imports nothing from brama; `brama/otp/**` imports nothing from
  brama outside `brama.otp`.
- No module under `brama/` is over 500 lines, no file under `tests/` over 800.

Each check has a self-check that feeds it a known violation, so a check that can no longer
fail is noticed.
"""

from __future__ import annotations

import ast
import importlib.util
import itertools
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECKED = ("brama", "tests", "benchmarks")
MAX_MODULE_LINES = 500
MAX_TEST_LINES = 800

ADAPTER = "brama/otp/_actor.py"
EXIT = "brama/otp/_exit.py"
ADAPTER_TEST = "tests/otp/test_pykka_adapter.py"
PYKKA = "pykka internals the adapter builds on (pinned pykka>=4,<5; test_pykka_adapter checks them)"

ALLOWED: dict[tuple[str, str], str] = {
    # the pykka adapter (see the docstring of brama/otp/_actor.py)
    (ADAPTER, "_ActorStop"): PYKKA,
    (EXIT, "_actor_weakref"): PYKKA,
    (EXIT, "_actor_refs"): PYKKA,
    (EXIT, "_actor_refs_lock"): PYKKA,
    (EXIT, "_at_fork_reinit"): "threading's reset of an Event/Condition in a forked child",
    (ADAPTER_TEST, "_create_actor_inbox"): PYKKA,
    (ADAPTER_TEST, "_actor_refs"): PYKKA,
    (ADAPTER_TEST, "_actor_refs_lock"): PYKKA,
    (ADAPTER_TEST, "_actor_weakref"): PYKKA,
    # stdlib private APIs, used on purpose
    ("tests/helpers.py", "_exit"): "os._exit: a forked child must not run atexit/pytest",
    ("tests/test_api_lifecycle.py", "_exit"): "os._exit, as in tests/helpers.py",
    ("brama/_fleet/link.py", "_replace"): "NamedTuple._replace: public API, underscored only "
    "so that it cannot clash with a field name",
    ("tests/otp/test_eventbus_restart.py", "_exit"): "os._exit, as in tests/helpers.py",
    ("tests/test_hypothesis_profiles.py", "_hypothesis_internal_use_settings"): "hypothesis "
    "keeps a decorated test's settings there and offers no public reader",
    ("brama/_guard.py", "_getframe"): "sys._getframe: the frame that entered a guard tells "
    "its entry from another's when guards are left out of order (generators)",
}
"""(module path, attribute) pairs allowed to read another module's private name, and why."""


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _defined(tree: ast.AST) -> set[str]:
    """Private names this module defines: functions, classes, assignment targets, imports
    bound to a private alias, `self._x =` / `cls._x =` attributes, `__slots__` entries."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
        ):
            names.add(node.attr)
        elif isinstance(node, ast.alias) and node.asname:
            names.add(node.asname)
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets
        ):
            names.update(
                c.value
                for c in ast.walk(node.value)
                if isinstance(c, ast.Constant) and isinstance(c.value, str)
            )
    return {name for name in names if _is_private(name)}


def _private_uses(tree: ast.AST) -> Iterator[tuple[int, str, str]]:
    """(line, name, how) of every private name read or written on something else than
    `self` / `cls`: `obj._x`, `getattr(obj, "_x")` (and set/has/delattr), `from m import _x`."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            on_self = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if not on_self:
                yield node.lineno, node.attr, f".{node.attr}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _is_private(node.args[1].value)
        ):
            yield node.lineno, node.args[1].value, f"{node.func.id}(..., {node.args[1].value!r})"
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                if _is_private(alias.name) and not _is_module(f"{node.module}.{alias.name}"):
                    yield node.lineno, alias.name, f"from {node.module} import {alias.name}"


def _is_module(dotted: str) -> bool:
    """True if `dotted` names a module (importing a private *module* is fine)."""
    path = ROOT.joinpath(*dotted.split("."))
    if path.with_suffix(".py").is_file() or (path / "__init__.py").is_file():
        return True
    try:
        return importlib.util.find_spec(dotted) is not None
    except (ImportError, ValueError):
        return False


def private_name_violations(
    source: str, path: str, allowed: dict[tuple[str, str], str] = ALLOWED
) -> list[str]:
    """`path:line: how` for every private name of another module that `source` uses."""
    tree = ast.parse(source, filename=path)
    own = _defined(tree)
    return [
        f"{path}:{line}: {how}"
        for line, name, how in sorted(set(_private_uses(tree)))
        if name not in own and (path, name) not in allowed
    ]


def _sources(*tops: str) -> list[Path]:
    return sorted(p for top in tops for p in (ROOT / top).rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# -- private names --


def test_no_module_reads_another_modules_private_names() -> None:
    found = [
        violation
        for path in _sources(*CHECKED)
        for violation in private_name_violations(path.read_text(), _rel(path))
    ]
    assert not found, "private names of other modules:\n" + "\n".join(found)


def test_the_private_name_check_can_fail() -> None:
    source = (
        "import os\n"
        "from lib import _hidden_function\n"
        "class Mine:\n"
        "    __slots__ = ('_slot',)\n"
        "    def __init__(self, other):\n"
        "        self._mine = other._theirs\n"
        "        other._written = 1\n"
        "        self._slot = getattr(other, '_by_name')\n"
        "def _helper(m: Mine) -> object:\n"
        "    return m._mine, m._slot, _helper, os._exit, m.__class__, m.__private\n"
    )
    assert private_name_violations(source, "fake.py", {("fake.py", "_exit"): "why"}) == [
        "fake.py:2: from lib import _hidden_function",
        "fake.py:6: ._theirs",
        "fake.py:7: ._written",
        "fake.py:8: getattr(..., '_by_name')",
        "fake.py:10: .__private",
    ]
    assert private_name_violations(source, "other.py", {}) == [
        "other.py:2: from lib import _hidden_function",
        "other.py:6: ._theirs",
        "other.py:7: ._written",
        "other.py:8: getattr(..., '_by_name')",
        "other.py:10: .__private",
        "other.py:10: ._exit",
    ]


def test_every_allowed_exception_is_still_needed() -> None:
    """An allowlist entry nobody needs any more is removed, not left to excuse a new use."""
    used: set[tuple[str, str]] = set()
    for path in _sources(*CHECKED):
        tree = ast.parse(path.read_text())
        own = _defined(tree)
        for _line, name, _how in _private_uses(tree):
            if name not in own:
                used.add((_rel(path), name))
    assert set(ALLOWED) - used == set()


# -- imports --


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(path: Path, tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of everything `path` imports, wherever the import statement is
    (module level, `if TYPE_CHECKING:`, inside a function); `from m import n` yields `m.n`,
    since `n` may be a module (`import_graph` falls back to `m` when it is not)."""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package.pop()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def import_graph(paths: list[Path]) -> dict[str, dict[str, int]]:
    """module -> {brama module it imports: line of the import}; an import names the longest
    known module that prefixes it (`from brama.otp import Actor` is an edge to `brama.otp`)."""
    known = {_module_name(path): path for path in paths}
    graph: dict[str, dict[str, int]] = {}
    for name, path in known.items():
        edges = graph.setdefault(name, {})
        for line, dotted in _imported(path, ast.parse(path.read_text())):
            parts = dotted.split(".")
            while parts and ".".join(parts) not in known:
                parts.pop()
            target = ".".join(parts)
            if target and target != name:
                edges.setdefault(target, line)
    return graph


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle (a list of modules, first == last) in every strongly connected component
    of more than one module (Tarjan), with the component's modules (sorted) after it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, {}):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_in(graph, component) + sorted(component) for component in components]


def _cycle_in(graph: dict[str, dict[str, int]], component: set[str]) -> list[str]:
    start = min(component)
    path = [start]
    seen = {start}
    node = start
    while True:  # in a strongly connected component every module has a successor inside it
        succ = min(s for s in graph[node] if s in component)
        if succ in seen:
            return [*path[path.index(succ) :], succ]
        path.append(succ)
        seen.add(succ)
        node = succ


def _describe(graph: dict[str, dict[str, int]], found: list[str]) -> str:
    """`a (line 3) -> b (line 7) -> a; all of: a, b, ...`: where each import is."""
    end = found.index(found[0], 1)
    cycle, component = found[: end + 1], found[end + 1 :]
    steps = " -> ".join(f"{a} (line {graph[a][b]})" for a, b in itertools.pairwise(cycle))
    return f"{steps} -> {cycle[-1]}; all of: {', '.join(component)}"


def test_brama_has_no_import_cycles() -> None:
    graph = import_graph(_sources("brama"))
    cycles = [_describe(graph, cycle) for cycle in find_cycles(graph)]
    assert not cycles, "import cycles in brama/:\n" + "\n".join(cycles)


def test_the_cycle_check_can_fail() -> None:
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3, "d": 4}, "d": {}}
    found = find_cycles(graph)
    assert found == [["a", "b", "c", "a", "a", "b", "c"]]
    assert _describe(graph, found[0]) == (
        "a (line 1) -> b (line 2) -> c (line 3) -> a; all of: a, b, c"
    )
    assert find_cycles({"a": {"b": 1}, "b": {}}) == []


def _brama_imports(path: Path, source: str | None = None) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text() if source is None else source)
    return sorted(
        (line, dotted)
        for line, dotted in _imported(path, tree)
        if dotted == "brama" or dotted.startswith("brama.")
    )


def test_the_import_checks_see_every_kind_of_import() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "import brama.otp._log, os\n"
        "from . import _actor\n"
        "from .. import errors\n"
        "if TYPE_CHECKING:\n"
        "    from brama._system import Brama\n"
        "def later():\n"
        "    from ._exit import Exit\n"
    )
    fake = ROOT / "brama" / "otp" / "_fake.py"
    assert _brama_imports(fake, source) == [
        (2, "brama.otp._log"),
        (3, "brama.otp._actor"),
        (4, "brama.errors"),
        (6, "brama._system.Brama"),
        (8, "brama.otp._exit.Exit"),
    ]


def test_errors_imports_nothing_from_brama() -> None:
    assert _brama_imports(ROOT / "brama" / "errors.py") == []


def test_the_otp_layer_imports_nothing_from_brama_outside_it() -> None:
    found = [
        f"{_rel(path)}:{line}: {dotted}"
        for path in _sources("brama/otp")
        for line, dotted in _brama_imports(path)
        if not (dotted == "brama.otp" or dotted.startswith("brama.otp."))
    ]
    assert not found, "brama.otp imports brama outside brama.otp:\n" + "\n".join(found)


# -- sizes --


def _too_long(paths: list[Path], limit: int) -> list[str]:
    counts = ((path, len(path.read_text().splitlines())) for path in paths)
    return [f"{_rel(path)}: {n} lines (limit {limit})" for path, n in counts if n > limit]


def test_no_brama_module_is_over_500_lines() -> None:
    assert _too_long(_sources("brama"), MAX_MODULE_LINES) == []


def test_no_test_file_is_over_800_lines() -> None:
    assert _too_long(_sources("tests"), MAX_TEST_LINES) == []


def test_the_size_check_can_fail() -> None:
    this = Path(__file__)
    lines = len(this.read_text().splitlines())
    limit = lines - 1
    assert _too_long([this], limit) == [f"tests/test_layout.py: {lines} lines (limit {limit})"]
    assert _too_long([this], lines) == []
