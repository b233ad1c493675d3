"""The product and its harness apart.

The harness (``harness/``, distribution ``arcyou-harness``, package ``arcyou_harness``) drives
the product from outside: it imports only public names of ``arcyou_trio``, and nothing in
``arcyou_trio`` imports the harness. The product's wheel, built from the Docker build context,
holds the product only.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ROOT / "arcyou_trio"
HARNESS = ROOT / "harness"
HARNESS_PACKAGES = ("bench", "chaos", "fuzz", "bridge", "arcyou_harness")


def python_files(top: Path) -> Iterator[Path]:
    for path in sorted(top.rglob("*.py")):
        if not any(part.startswith(".") or part in {"build", "__pycache__"} for part in path.parts):
            yield path


def private(name: str) -> bool:
    """A private name: a leading underscore, dunders (``__doc__``) excepted."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def is_product(module: str) -> bool:
    return module == "arcyou_trio" or module.startswith("arcyou_trio.")


def private_uses(tree: ast.AST) -> list[str]:
    """Every use of a private name of ``arcyou_trio`` in one module: in the module path or the
    names of an import, and as an attribute of a name bound by such an import."""
    found: list[str] = []
    bound: set[str] = set()  # local names bound to arcyou_trio modules or objects
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if is_product(alias.name):
                    if any(private(part) for part in alias.name.split(".")):
                        found.append(f"line {node.lineno}: import {alias.name}")
                    bound.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and is_product(node.module or ""):
            module = node.module or ""
            if any(private(part) for part in module.split(".")):
                found.append(f"line {node.lineno}: from {module} import ...")
            for alias in node.names:
                if private(alias.name) or alias.name == "*":
                    found.append(f"line {node.lineno}: from {module} import {alias.name}")
                bound.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr):
            root: ast.expr = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in bound:
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_rule_finds_private_uses() -> None:
    """The checker itself: each way of reaching a private product name is caught."""
    source = """
import arcyou_trio.store._impl
import arcyou_trio.store as store
from arcyou_trio.store import _hidden, Store
from arcyou_trio.client.chat import split_ws_url
from arcyou_trio.store._private import x
store.send._hidden
Store._run
arcyou_trio.__doc__
split_ws_url.__name__
"""
    found = private_uses(ast.parse(source))
    assert [use.split(":")[0] for use in found] == [
        "line 2",
        "line 4",
        "line 6",
        "line 7",
        "line 8",
    ], found


def test_harness_uses_only_public_product_names() -> None:
    files = list(python_files(HARNESS))
    assert len(files) > 20, "the harness moved?"
    problems = [
        f"{path.relative_to(ROOT)} {use}"
        for path in files
        for use in private_uses(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    ]
    assert not problems, "\n".join(problems)


def test_product_never_imports_the_harness() -> None:
    problems = []
    for path in python_files(PRODUCT):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Call):  # importlib.import_module("..."), __import__("...")
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if called in {"import_module", "__import__"}:
                    names = [a.value for a in node.args if isinstance(a, ast.Constant)]
            for name in names:
                if isinstance(name, str) and name.split(".")[0] == "arcyou_harness":
                    problems.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    assert not problems, "\n".join(problems)


def test_product_tree_holds_no_harness() -> None:
    for name in HARNESS_PACKAGES:
        assert not (PRODUCT / name).exists(), f"arcyou_trio/{name} is harness code"
    assert not (ROOT / "benchmarks").exists(), "benchmarks/ moved to harness/"


def docker_context() -> list[str]:
    """What ``.dockerignore`` lets into the build context (an allow-list after ``*``)."""
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "allow-list: exclude everything first"
    return [line[1:].rstrip("/") for line in lines if line.startswith("!")]


def test_docker_context_lets_no_harness_in() -> None:
    allowed = docker_context()
    assert set(allowed) == {"pyproject.toml", "README.md", "arcyou_trio"}
    assert not {"harness", "tests", "benchmarks"} & {Path(a).parts[0] for a in allowed}


def test_product_wheel_contains_no_harness(tmp_path: Path) -> None:
    """Build the product's wheel from a copy of the Docker build context, as the image does."""
    context = tmp_path / "context"
    context.mkdir()
    for name in docker_context():
        source = ROOT / name
        if source.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.py[cod]", "*.egg-info")
            shutil.copytree(source, context / name, ignore=ignore)
        else:
            shutil.copy2(source, context / name)
    out = tmp_path / "wheels"
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(context)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("pip wheel took over 120 s")
    assert done.returncode == 0, done.stdout + done.stderr
    [wheel] = out.glob("arcyou_trio-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    packages = {
        name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")
    }
    assert packages == {"arcyou_trio"}, packages
    inside = {name.split("/")[1] for name in names if name.startswith("arcyou_trio/")}
    assert not inside & set(HARNESS_PACKAGES), sorted(inside)
    assert any(n.startswith("arcyou_trio/store/migrations/") and n.endswith(".sql") for n in names)


# Who may import whom inside the product: a module imports its own package and lower layers
# only, so the tree reads top-down (docs/architecture.md draws the same map).
LAYERS: dict[str, int] = {
    "errors": 0,
    "config": 1,
    "protocol": 2,
    "runner": 2,
    "keys": 2,
    "auth": 3,
    "tokens": 3,
    "store": 4,
    "bus": 4,
    "gateway": 5,
    "worker": 5,
    "api": 5,
    "migrate": 5,
    "client": 6,
    "devstack": 6,
    "cli": 7,
    "__main__": 8,
}


def product_part(path: Path) -> str:
    rel = path.relative_to(PRODUCT)
    return rel.parts[0].removesuffix(".py")


def product_imports(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if is_product(alias.name):
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and is_product(node.module or ""):
            module = node.module or ""
            if module == "arcyou_trio":
                for alias in node.names:
                    yield node.lineno, f"arcyou_trio.{alias.name}"
            else:
                yield node.lineno, module


def test_every_product_part_has_a_layer() -> None:
    parts = {product_part(p) for p in python_files(PRODUCT)} - {"__init__"}
    assert parts <= set(LAYERS), f"give these a layer in LAYERS: {sorted(parts - set(LAYERS))}"


def test_imports_flow_down() -> None:
    upward: list[str] = []
    for path in python_files(PRODUCT):
        part = product_part(path)
        if part == "__init__":
            continue
        for lineno, module in product_imports(ast.parse(path.read_text(), str(path))):
            target = module.split(".")[1] if "." in module else ""
            if target in ("", part):
                continue
            if LAYERS.get(target, 99) >= LAYERS[part]:
                rel = path.relative_to(ROOT)
                upward.append(f"{rel}:{lineno}: {part} (layer {LAYERS[part]}) imports {module}")
    assert not upward, "imports running up or across the layers:\n" + "\n".join(upward)


def test_the_layer_rule_finds_an_upward_import() -> None:
    tree = ast.parse("from arcyou_trio.cli import main\nimport arcyou_trio.store.db\n")
    assert [m for _, m in product_imports(tree)] == ["arcyou_trio.cli", "arcyou_trio.store.db"]
    assert LAYERS["cli"] > LAYERS["gateway"] > LAYERS["store"] > LAYERS["protocol"]


def test_product_modules_are_small() -> None:
    lines = {
        str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in python_files(PRODUCT)
    }
    big = {path: n for path, n in lines.items() if n > 500}
    assert not big, f"split these (over 500 lines): {big}"
