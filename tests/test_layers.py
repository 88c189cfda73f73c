"""The library's three layers, checked on its source: imports go one way (book -> scale -> core, book -> core), each
layer imports only the third-party packages its install declares, and the core runs without the extras."""
import ast
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lib" / "lpft"
# import name -> distribution name, where they differ
DISTRIBUTION = {"sklearn": "scikit-learn", "PIL": "pillow", "myst_nb": "myst-nb", "pytest_notebook": "pytest-notebook",
                "yaml": "pyyaml", "IPython": "ipython"}
LAYERS = ("core", "scale", "book")
ALLOWED = {"core": {"core"}, "scale": {"core", "scale"}, "book": {"core", "scale", "book"}}
MAX_LINES = 450


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ("scale", "book") else "core"


def imports(path: Path) -> set[str]:
    """Every absolute module a file imports, at any depth (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import; the library imports absolutely"
            base = node.module
            # `from lpft.book import paths` imports the module lpft.book.paths
            found |= {f"{base}.{a.name}" if base.startswith("lpft") and (PACKAGE.parent / base.replace(".", "/") /
                                                                         f"{a.name}.py").exists() else base
                      for a in node.names}
    return found


def files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def declared() -> dict[str, set[str]]:
    """The distributions each layer may import: the core's dependencies, plus each extra (the book includes scale)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(reqs):
        return {r.split(">")[0].split("=")[0].split("<")[0].split("[")[0].strip().lower() for r in reqs}

    core = names(project["dependencies"])
    scale = core | names(project["optional-dependencies"]["scale"])
    return {"core": core, "scale": scale, "book": scale | names(project["optional-dependencies"]["book"])}


def test_the_three_layers_exist():
    layers = {layer_of(module_name(p)) for p in files()}
    assert layers == set(LAYERS)


def test_imports_go_one_way():
    wrong = set()
    for path in files():
        source = module_name(path)
        for target in imports(path):
            if target.split(".")[0] == "lpft" and layer_of(target) not in ALLOWED[layer_of(source)]:
                wrong.add((source, target))
    assert not wrong, f"imports against the layering (book -> scale -> core): {sorted(wrong)}"


def test_each_layer_imports_only_what_its_install_declares():
    may = declared()
    undeclared = []
    for path in files():
        layer = layer_of(module_name(path))
        for target in imports(path):
            top = target.split(".")[0]
            if top in sys.stdlib_module_names or top in ("lpft", "__future__"):
                continue
            if DISTRIBUTION.get(top, top).lower().replace("_", "-") not in may[layer]:
                undeclared.append(f"{path.relative_to(PACKAGE)} imports {top} ({layer} layer)")
    assert not undeclared, "\n".join(undeclared)


def test_no_module_is_over_the_limit():
    too_long = {p.relative_to(PACKAGE).as_posix() for p in files() if len(p.read_text().splitlines()) > MAX_LINES}
    assert not too_long, f"modules over {MAX_LINES} lines (split them by concept): {sorted(too_long)}"


def test_the_core_runs_without_the_extras():
    """The theory and a digit fit, in a fresh interpreter where every package of the extras fails to import."""
    blocked = ["matplotlib", "seaborn", "PIL", "submitit", "myst_nb", "papermill", "jupytext", "nbformat", "sphinx",
               "pytest_notebook", "IPython"]
    script = textwrap.dedent(f"""
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in {blocked!r}:
                    raise ImportError(f"{{name}} is not part of the core install")
        sys.meta_path.insert(0, Block())
        import pkgutil, lpft
        core = [m.name for m in pkgutil.iter_modules(lpft.__path__) if not m.ispkg]
        for name in core:
            __import__(f"lpft.{{name}}")
        from lpft import digits, finetune, theory
        inst = theory.make_instance(theory.Setting(), seed=0)
        v_lp = theory.linear_probe(inst.X, inst.Y, inst.B0)
        assert theory.ood_error(v_lp, inst.B0, inst) >= 0
        task = digits.make_task(n_train_per_class=5, seed=0)
        model = finetune.fit("LP", digits.DigitNet(10, "group"), task, {{"C": 1.0}}, seed=0)
        print(len(core), finetune.accuracy(model, task.test_id) >= 0)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    n, ok = out.stdout.split()
    assert int(n) >= 12 and ok == "True"


@pytest.mark.parametrize("layer", LAYERS)
def test_module_docstrings(layer):
    """Every module says what it is for (the first thing a contributor reads)."""
    missing = [p.relative_to(PACKAGE).as_posix() for p in files()
               if layer_of(module_name(p)) == layer and not ast.get_docstring(ast.parse(p.read_text()))]
    assert not missing, missing
