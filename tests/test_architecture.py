"""The shape of the package, checked from its source: which modules import which, and where feedback kinds branch.

The import graph counts every import statement, also those inside functions (they run too, only later), and leaves
out `if TYPE_CHECKING:` blocks, which never run.
"""

import ast
import re
from pathlib import Path

import pytest

import rewardkit
from rewardkit.kinds import KIND_SPELLINGS, KINDS

SOURCE = Path(rewardkit.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(tree: ast.AST, this: str, is_package: bool, known: set[str]) -> set[str]:
    """rewardkit modules named by the import statements of one module (outside `if TYPE_CHECKING:`)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = this.split(".") if is_package else this.split(".")[:-1]
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {name for name in found if name in known and name != this}


@pytest.fixture(scope="module")
def import_graph() -> dict[str, set[str]]:
    files = {module_name(path): path for path in SOURCE.rglob("*.py")}
    return {name: imported_modules(ast.parse(path.read_text()), name, path.name == "__init__.py", set(files))
            for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_sees_function_level_imports_but_not_type_checking_blocks():
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import x.b\n"
                     "def f():\n    from x import c\n    from .d import e\n")
    assert imported_modules(tree, "x.a", False, {"x", "x.b", "x.c", "x.d", "x.d.e"}) == {"x", "x.c", "x.d", "x.d.e"}


def test_no_import_cycles(import_graph):
    assert "rewardkit.kinds" in import_graph and import_graph["rewardkit.models.trainer"]
    assert cycles(import_graph) == []


@pytest.mark.parametrize("source, forbidden", [
    ("rewardkit.models", "rewardkit.eval"),  # training never needs evaluation code
    ("rewardkit.rl", "rewardkit.models.trainer"),  # rl shares run plumbing through rewardkit.runs, not the trainer
    ("rewardkit.data", "rewardkit.models"),  # data is the bottom layer
    ("rewardkit.data", "rewardkit.eval"),
    ("rewardkit.losses", "rewardkit.models"),
    ("rewardkit.rewards", "rewardkit.rl"),
    ("rewardkit.pages", "rewardkit.eval"),  # the page builder serves every report
])
def test_arrows_run_one_way(import_graph, source, forbidden):
    wrong = sorted(f"{name} -> {target}" for name, targets in import_graph.items()
                   if name == source or name.startswith(source + ".")
                   for target in targets if target == forbidden or target.startswith(forbidden + "."))
    assert wrong == []


_NAME = "[\"'](?:" + "|".join(re.escape(spelling) for spelling in KIND_SPELLINGS) + ")[\"']"  # a kind's name quoted
KIND_BRANCH = re.compile("|".join([
    r"\b(?:kind|task)\s*(?:==|!=)",  # kind == ..., item.task != ... (a labelling task is a kind's name)
    r"\b(?:kind|task)\s+(?:not\s+)?in\s*[(\[{]",  # task in ("ratings", "binary")
    rf"(?:==|!=)\s*{_NAME}|{_NAME}\s*(?:==|!=)",  # anything == "pairs"
    rf"\bin\s*[(\[{{]\s*{_NAME}",  # anything in ("rankings", ...)
]))


def kind_branches(text: str) -> list[int]:
    """The lines of `text` that branch on a kind of feedback by comparing it or its name."""
    return [number for number, line in enumerate(text.splitlines(), 1) if KIND_BRANCH.search(line)]


def test_the_branch_finder_finds_comparisons_of_kinds_and_their_names():
    caught = ["if kind == other:", 'if item.task == "pairs":', 'if task in ("ratings", "binary") and n != 1:',
              'level = "interval" if task == "ratings" else "nominal"', 'if store.task != "rankings":',
              'if name == "binary":', 'if "pairwise" == spelling:', 'if mode not in ["pairs", "all"]:']
    allowed = ["if task not in TASKS:", "labelling = task_named(item.task)", 'existing_task = "pairs"',
               'kinds = sorted({DEFAULT_TASK.get(g.kind, g.kind) for g in groups})', 'DEFAULT = {"samples": "pairs"}']
    assert kind_branches("\n".join(caught + allowed)) == list(range(1, len(caught) + 1))


def test_feedback_kinds_branch_only_in_the_registry():
    branches = [f"{path.relative_to(SOURCE)}:{number}" for path in sorted(SOURCE.rglob("*.py"))
                if path.name != "kinds.py" for number in kind_branches(path.read_text())]
    assert branches == []


def test_every_kind_can_be_labelled():
    from rewardkit.label.tasks import LABEL_TASKS

    assert list(LABEL_TASKS) == list(KINDS.values())


# ----------------------------------------------------------------------------------------------------- the floors
# A module imports only modules on its own floor or below. Here every import counts, TYPE_CHECKING ones too: an arrow
# that climbs, even one only a type checker follows, is a module reaching above its layer. The floors, bottom up, are
# written here; a new top-level module or package must be given one (a test checks).
SOURCE_TREE = SOURCE  # the installed package: this checkout, installed editable

FLOORS: list[tuple[str, ...]] = [
    ("errors",),
    ("config", "runs", "pages", "device", "tracking", "web"),  # plumbing every command shares
    ("data", "kinds"),  # records, and what each kind of feedback is
    ("losses",),
    ("models",),  # reward models, training
    ("rewards", "eval"),  # reward functions; evaluation of reward models
    ("rl", "serve", "integrations"),  # what uses rewards: policy optimization, serving, other frameworks
    ("label",),  # the labelling app, on top of everything it fills queues with
    ("cli", "__init__", "__main__"),
]
FLOOR = {name: level for level, names in enumerate(FLOORS) for name in names}


def floor_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of every absolute import of a rewardkit module in `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] if node.module != "rewardkit" else [f"rewardkit.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found += [(node.lineno, name) for name in names if name.startswith("rewardkit.")]
    return found


def upward_imports(package: Path) -> list[str]:
    """`file:line -> module` for every import of a module on a higher floor than the importing one's."""
    climbs = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        floor = FLOOR[relative.parts[0].removesuffix(".py")]
        for line, module in floor_imports(path.read_text()):
            target = module.split(".")[1]
            if FLOOR.get(target, -1) > floor:
                climbs.append(f"{relative}:{line} -> {module}")
    return climbs


def test_every_top_level_module_has_a_floor():
    names = {p.name.removesuffix(".py") for p in SOURCE_TREE.iterdir()
             if (p.suffix == ".py" or (p / "__init__.py").exists())}
    assert names - set(FLOOR) == set()


def test_no_module_imports_one_on_a_higher_floor():
    assert upward_imports(SOURCE_TREE) == []


def test_an_upward_import_is_caught(tmp_path):
    # a copy of two floors, then data (floor 2) importing eval (floor 5) inside a function, as kinds.py used to
    package = tmp_path / "rewardkit"
    for name in ("data", "eval"):
        (package / name).mkdir(parents=True)
        (package / name / "__init__.py").write_text("")
    (package / "eval" / "metrics.py").write_text("from rewardkit.data import load_pairs\n")
    assert upward_imports(package) == []
    (package / "data" / "loaders.py").write_text("def summary():\n    from rewardkit.eval.metrics import x\n")
    assert upward_imports(package) == ["data/loaders.py:2 -> rewardkit.eval.metrics"]


@pytest.mark.parametrize("source, expected", [
    ("import rewardkit.models.trainer", ["rewardkit.models.trainer"]),
    ("from rewardkit import eval", ["rewardkit.eval"]),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from rewardkit.rl.config import RLConfig",
     ["rewardkit.rl.config"]),
    ("from . import sibling\nimport torch", []),
])
def test_floor_imports_are_read_at_module_level_in_functions_and_for_type_checking(source, expected):
    assert [module for _, module in floor_imports(source)] == expected
