"""docs/architecture.md's map, checked against the code: imports flow one way, layer by layer,
phase files never import each other, there are no import cycles, only engine/backend.py
imports CuPy (nothing imports PyTorch), the core never imports the speed wing, one forward
pass on the default path stays small and branch-free, and docs/tour.md's counts are exact."""
import ast
import pathlib
import re
import sys

import numpy

import pytest

import minillm

PACKAGE = pathlib.Path(minillm.__file__).parent
# The layers of docs/architecture.md, lowest first: a module imports only from its own layer
# or those before it. A name ending in "." stands for every module of that package.
LAYERS = [
    ["errors", "io.checks"],
    ["engine.backend", "tokenizers.", "io.plots", "phases.progress"],
    ["engine.ops", "io.safe_files", "data."],
    ["engine.tensor"],
    ["engine.gradcheck", "model.functional"],
    ["model.nn", "engine.optim", "phases.losses", "model.kv_cache", "model.memory"],
    ["model.gpt", "model.ngram", "model.rnn"],
    ["fast."],  # the speed wing: above the core it replaces parts of, imported by none of it
    ["model.sampling", "model.reward_model"],
    ["io.checkpoint", "io.run_dir", "io.hf_gpt2", "io.hf_dir", "app.explore"],
    ["app.chat_session", "phases.rl.rollouts", "phases.rl.reinforce", "phases.rl.ppo", "phases.rl.grpo",
     "phases.rl.best_of_n"],
    ["phases.trainer", "phases.common", "phases.judge"],
    ["phases.pretrain", "phases.sft", "phases.reward", "phases.rl.rlhf", "phases.rl.dpo",
     "phases.rl.best_of_n_run"],
    ["app.pipeline_phases", "app.report", "app.report_writer", "app.results", "app.pipeline", "app.class_run",
     "app.labeling", "app.health"],
    ["app.commands."],
    ["app.cli", "__main__"],
]
PHASE_FILES = set(LAYERS[12])
CORE = ("engine.", "model.")


def module_names():
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] != "__init__":  # a package's __init__ only gathers names for users
            yield ".".join(parts), path


MODULES = dict(module_names())


def layer(name: str) -> int:
    for rank, members in enumerate(LAYERS):
        if any(name == m or (m.endswith(".") and name.startswith(m)) for m in members):
            return rank
    raise AssertionError(f"{name} is on no layer of the map: add it to docs/architecture.md and LAYERS")


def imports(path: pathlib.Path, top_level_only: bool = False) -> set[str]:
    """The minillm modules a file imports (anywhere in it, or only at its top level)."""
    found = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in (tree.body if top_level_only else ast.walk(tree)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("minillm"):
            base = node.module.removeprefix("minillm").lstrip(".")
            for alias in node.names:
                full = f"{base}.{alias.name}".lstrip(".")
                found.add(full if full in MODULES else base)
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("minillm.") for a in node.names if a.name.startswith("minillm.")}
    return {name for name in found if name in MODULES}


GRAPH = {name: imports(path) - {name} for name, path in MODULES.items()}
# What runs when a module is imported: a cycle here makes import order matter.
IMPORT_TIME = {name: imports(path, top_level_only=True) - {name} for name, path in MODULES.items()}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_flow_toward_the_lower_layers(name):
    upward = [dep for dep in GRAPH[name] if layer(dep) > layer(name)]
    assert not upward, f"{name} (layer {layer(name)}) imports {upward} from a higher layer"


def test_the_core_never_imports_the_speed_wing():
    for name, deps in GRAPH.items():
        if name.startswith(CORE):
            assert not [d for d in deps if d.startswith("fast.")], f"{name} imports the speed wing"


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
