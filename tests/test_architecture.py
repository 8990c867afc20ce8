"""docs/architecture.md's map, checked against the code: imports flow one way, package by
package, phase files never import each other, there are no import cycles, every module is
reached from the command, the package or a lesson, only the command imports the speed wing,
only engine/backend.py imports CuPy (nothing imports PyTorch), one forward pass on the
default path stays small and branch-free, and docs/tour.md's counts are exact."""
import ast
import json
import pathlib
import re
import sys

import numpy

import pytest

import minillm
from minillm.app import cli

PACKAGE = pathlib.Path(minillm.__file__).parent
REPO = PACKAGE.parent

# The layers of minillm, lowest first, each with its reason (docs/architecture.md shows the same
# list). A module imports only from its own package or from the packages before it here; a
# module belongs to the longest name here that its own starts with (phases.rl.dpo: phases.rl).
ORDER = [
    ("errors", "UserError, the one error type every layer raises: imports nothing"),
    ("tokenizers", "text to ids and back in pure Python (plus regex): no arrays, no model"),
    ("engine", "the array backend (NumPy or CuPy) and autograd: tensor, ops, gradcheck, optim"),
    ("data", "user files, the tiny world, batches of ids as host arrays: no model, no autograd"),
    ("model", "the networks on the engine: layers, GPT, sampling, the reward model"),
    ("io", "files on disk: checkpoints, run directories, Hugging Face formats, plots, flag checks"),
    ("phases", "the loops of Phases 1 and 2 and the reward model, and the pieces every loop shares"),
    ("phases.rl", "Phase 3: RLHF's algorithms, DPO and best-of-n, built on the shared loop pieces"),
    ("fast", "the speed wing: swaps fast twins into the core by name; only the command imports it"),
    ("app", "what a user runs beside the parser: pipeline, report, labeling, chat, results"),
    ("app.commands", "one module per command group: its flags, then a call into a phase or app"),
    ("app.cli", "the minillm command: switches the speed wing on, registers every command group"),
    ("__main__", "python -m minillm: runs the command"),
]
RANK = {name: rank for rank, (name, _) in enumerate(ORDER)}

# Imports against ORDER that wait on a move; each names the move that removes it.
# test_every_waiting_import_still_exists_and_still_goes_up fails once an entry is not needed.
WAITING: dict[tuple[str, str], str] = {}
PHASE_FILES = {"phases.pretrain", "phases.sft", "phases.reward", "phases.rl.rlhf", "phases.rl.dpo",
               "phases.rl.best_of_n_run"}
# Modules no command reaches, there for the lessons to import (each lesson's own use is checked).
LESSON_ONLY = {
    "app.class_run": "the classroom pipeline's run that lessons 00 and 04-11 open",
    "model.memory": "lesson 06's bytes of weights, optimizer state and KV cache",
    "model.rnn": "lesson 02's recurrent language model, the transformer's predecessor",
}


def module_names():
    """{dotted name under minillm: path}; a package's __init__.py goes by the package's name
    ("fast", "phases.rl"), minillm/__init__.py by ""."""
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


MODULES = dict(module_names())


def package(name: str) -> str:
    """The entry of ORDER a module belongs to: the longest that its name starts with."""
    owners = [p for p, _ in ORDER if name == p or name.startswith(p + ".")]
    assert owners, f"minillm.{name} belongs to no layer: add its package to ORDER and docs/architecture.md"
    return max(owners, key=len)


def imports(path: pathlib.Path, top_level_only: bool = False) -> set[str]:
    """The minillm modules a file imports (anywhere in it, functions included, or only at its top level)."""
    found = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in (tree.body if top_level_only else ast.walk(tree)):
        if isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import; write from minillm.... as every module does")
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "minillm":
            base = node.module.removeprefix("minillm").lstrip(".")
            for alias in node.names:
                full = f"{base}.{alias.name}".lstrip(".")
                found.add(full if full in MODULES else base)
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("minillm.") for a in node.names if a.name.startswith("minillm.")}
    return {name for name in found if name in MODULES}


# The command loads its command groups by name (importlib), which no import statement shows.
COMMAND_GROUPS = {f"app.commands.{name}_command" for name in cli.COMMAND_MODULES}
GRAPH = {name: imports(path) - {name} | (COMMAND_GROUPS if name == "app.cli" else set())
         for name, path in MODULES.items()}
# What runs when a module is imported: a cycle here makes import order matter.
IMPORT_TIME = {name: imports(path, top_level_only=True) - {name} for name, path in MODULES.items()}


def test_every_package_has_a_place_in_the_order():
    packages = {name for name, path in MODULES.items() if path.name == "__init__.py" and name}
    top_modules = {name for name, path in MODULES.items() if path.parent == PACKAGE and path.name != "__init__.py"}
    assert sorted((packages | top_modules) - set(RANK)) == []
    assert [name for name, _ in ORDER if name not in MODULES] == []


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n))  # minillm/__init__.py imports by name, lazily
def test_imports_flow_down_the_order_or_stay_in_the_package(name):
    upward = sorted(dep for dep in GRAPH[name]
                    if RANK[package(dep)] > RANK[package(name)] and (name, dep) not in WAITING)
    assert not upward, (f"minillm.{name} ({package(name)}) imports {upward} from a later package of ORDER; "
                        f"move what it needs down to {package(name)} or below")


def test_the_map_shows_the_order_with_its_reasons():
    """docs/architecture.md lists ORDER as paths, a package as `phases/rl/`, a module as `app/cli.py`."""
    def shown(name):
        path = name.replace(".", "/")
        return path + ("/" if MODULES[name].name == "__init__.py" else ".py")

    doc = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    lines = re.findall(r"^(\S+/|\S+\.py) +(.+)$", doc, flags=re.MULTILINE)
    listed = [(path, reason) for path, reason in lines if path in {shown(name) for name, _ in ORDER}]
    assert listed == [(shown(name), reason) for name, reason in ORDER]


def test_every_waiting_import_still_exists_and_still_goes_up():
    for (name, dep), move in WAITING.items():
        assert dep in GRAPH[name] and RANK[package(dep)] > RANK[package(name)], (
            f"{name} -> {dep} no longer goes up the order: drop it from WAITING ({move})")


def test_only_the_command_imports_the_speed_wing():
    importers = {name for name, deps in GRAPH.items()
                 if name and package(name) != "fast" and any(package(d) == "fast" for d in deps)}
    assert importers == {"app.cli"}, importers


def _lesson_imports() -> set[str]:
    """The minillm modules named in the lessons' code cells (minillm.model.rnn, or rnn in
    `from minillm.model import rnn`)."""
    named = set()
    for notebook in sorted((REPO / "lessons").glob("*.ipynb")):
        for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] == "code":
                code = "".join(cell["source"])
                named |= set(re.findall(r"\bminillm\.([\w.]+)", code))
                named |= {f"{package}.{name.split()[0]}" for package, names in
                          re.findall(r"from minillm\.([\w.]+) import ([\w, ]+)", code) for name in names.split(",")}
    return named


def test_every_module_is_reached_from_the_command_the_package_or_a_lesson():
    """From the minillm command (app/cli.py and its command groups, __main__.py, the speed wing it
    switches on) and from the names `import minillm` loads lazily, every module is imported,
    directly or through others; the few that only lessons import are LESSON_ONLY."""
    roots = {"app.cli", "__main__", "", *(home.removeprefix("minillm.") for home in minillm._HOMES.values()),
             *minillm._PACKAGES}
    reached, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            parts = name.split(".")
            todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # importing a module runs its packages
            todo += GRAPH[name]
    assert sorted(set(MODULES) - reached - set(LESSON_ONLY)) == [], "modules nothing imports"
    assert sorted(set(LESSON_ONLY) & reached) == [], "reached from the command: drop from LESSON_ONLY"
    lessons = _lesson_imports()
    assert [name for name in LESSON_ONLY if not any(n == name or n.startswith(name + ".") for n in lessons)] == []


def test_phase_files_never_import_each_other():
    for name in PHASE_FILES:
        assert not GRAPH[name] & (PHASE_FILES - {name}), f"{name} imports another phase"


def test_no_import_cycles():
    state: dict[str, str] = {}

    def visit(name, path):
        state[name] = "open"
        for dep in IMPORT_TIME[name]:
            assert state.get(dep) != "open", f"import cycle: {' -> '.join(path + [dep])}"
            if dep not in state:
                visit(dep, path + [dep])
        state[name] = "done"

    for name in sorted(MODULES):
        if name not in state:
            visit(name, [name])


def test_only_the_backend_imports_cupy_and_nothing_imports_torch():
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        roots = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        roots |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert "torch" not in roots, name
        assert "cupy" not in roots or name == "engine.backend", name


def _span(path: pathlib.Path, qualified: str) -> int:
    """Lines of the function or class `qualified` (e.g. "Tensor.backward") in a file."""
    node = ast.parse(path.read_text(encoding="utf-8"))
    for part in qualified.split("."):
        found = [n for n in ast.iter_child_nodes(node)
                 if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == part]
        assert found, f"docs/tour.md names {qualified} in {path.name}, which has no such definition"
        node = found[0]
    return node.end_lineno - node.lineno + 1


TOUR = (PACKAGE.parent / "docs" / "tour.md").read_text(encoding="utf-8")


def test_the_guided_tour_names_real_code_and_counts_it_exactly():
    """Every row names a file and definitions in it; the tour's stated totals (rows,
    definitions, lines) are the ones counted here."""
    rows = re.findall(r"\[`([\w/]+\.py)`\]\(\.\./minillm/([\w/]+\.py)\) · ((?:`[\w.]+`(?:, )?)+)", TOUR)
    assert rows and all(shown == linked for shown, linked, _ in rows)
    names = [(path, name) for path, _, names in rows for name in re.findall(r"`([\w.]+)`", names)]
    lines = sum(_span(PACKAGE / path, name) for path, name in names)
    stated = re.search(r"(\d+) rows name (\d+) definitions, ([\d,]+) lines in all", TOUR)
    assert stated, "docs/tour.md states its totals as 'N rows name M definitions, L lines in all'"
    assert (int(stated[1]), int(stated[2]), int(stated[3].replace(",", ""))) == (len(rows), len(names), lines)


# ----- one forward pass on the default path --------------------------------------------

# A line that picks a device or hands work to threads: none may run in the default forward pass.
BRANCH = re.compile(r"is (not )?numpy|on_gpu|device ==|parallel_rows|cpu_threads|threading|cuda_kernels|kernels\.")


def _trace_forward():
    """Run one forward pass of a tiny GPT under sys.settrace: {file: lines run in it}."""
    import minillm
    from minillm.model.gpt import GPT, GPTConfig
    minillm.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=8))
    ids = numpy.random.default_rng(0).integers(0, 13, (2, 8))
    ran: dict[str, set] = {}

    def in_file(frame, event, arg):
        if event == "line":
            ran[frame.f_code.co_filename].add(frame.f_lineno)
        return in_file

    def on_call(frame, event, arg):
        if frame.f_code.co_filename.startswith(str(PACKAGE)):
            ran.setdefault(frame.f_code.co_filename, set())
            return in_file
        return None

    sys.settrace(on_call)
    try:
        model(ids)
    finally:
        sys.settrace(None)
    return ran


def test_one_forward_pass_crosses_few_modules_and_no_device_or_thread_branch():
    ran = _trace_forward()
    sizes = {pathlib.Path(f).relative_to(PACKAGE).as_posix(): len(pathlib.Path(f).read_text().splitlines())
             for f in ran}
    assert len(sizes) <= 7 and sum(sizes.values()) <= 1900, sizes
    for path, lines in ran.items():
        text = pathlib.Path(path).read_text(encoding="utf-8").splitlines()
        branches = [(n, text[n - 1].strip()) for n in sorted(lines) if BRANCH.search(text[n - 1])]
        assert not branches, f"{path} runs a device or thread branch in the forward pass: {branches}"


def test_no_two_modules_share_a_name():
    leaves: dict[str, list[str]] = {}
    for name in MODULES:
        leaves.setdefault(name.rsplit(".", 1)[-1], []).append(name)
    shared = {leaf: names for leaf, names in leaves.items() if len(names) > 1}
    assert not shared, f"modules that share a name: {shared}"


def test_the_top_of_the_package_holds_packages_only():
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert loose == ["__init__.py", "__main__.py", "errors.py"], loose
