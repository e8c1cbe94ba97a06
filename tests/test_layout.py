"""The package layout: one `tcfuzz` namespace, stages that import only downwards.

The data flows generator -> world -> verifier fix-up -> emitter -> executor -> oracle -> triage; a
stage may import its own stage and the ones below it, never one above (ARCHITECTURE.md)."""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent

# Lowest first. `tcfuzz` itself (SOURCE_TREE, __version__) is below everything. The generator sits
# over the machine because a fuzz input decodes to the batch driver's case records.
STAGES = [
    "tcfuzz",
    "tcfuzz.model",
    "tcfuzz.jit_old",
    "tcfuzz.jit_new",
    "tcfuzz.codegens",
    "tcfuzz.machine",
    "tcfuzz.gen",
    # The live kernel executes worlds, like the machine, and is a voter the oracle consults: above
    # the generator (the kernel lowering reads worlds only) and below the verdict.
    "tcfuzz.live",
    "tcfuzz.verdict",
    "tcfuzz.triage",
    "tcfuzz.analysis",
    "tcfuzz.frontends",
    "tcfuzz.selftest",
    "tcfuzz.report",
    "tcfuzz.cli",
]
FOLDERS = {"tcfuzz.model": "model", "tcfuzz.jit_old": "jit_old", "tcfuzz.jit_new": "jit_new", "tcfuzz": "fuzz"}


def stage_of(module: str) -> int:
    return max(i for i, s in enumerate(STAGES) if module == s or module.startswith(s + "."))


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT)
    top = {v: k for k, v in FOLDERS.items()}[rel.parts[0]]
    parts = [top, *rel.parts[1:-1]] + ([] if rel.stem == "__init__" else [rel.stem])
    return ".".join(parts)


def sources():
    for folder in FOLDERS.values():
        yield from sorted((ROOT / folder).rglob("*.py"))


def imports(path: Path, name: str):
    """Absolute tcfuzz modules imported by a file (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for a in node.names:
                candidate = f"{base}.{a.name}"
                yield candidate if importlib.util.find_spec(base) and _is_module(candidate) else base


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def upward_imports():
    for path in sources():
        name = module_name(path)
        for imported in imports(path, name):
            if imported.startswith("tcfuzz") and stage_of(imported) > stage_of(name):
                yield f"{name} imports {imported}"


def test_no_stage_imports_a_higher_one():
    assert list(upward_imports()) == []


def test_the_layering_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The check itself can fail: a model module importing the oracle is reported."""
    bad = ROOT / "model" / "_layering_probe.py"
    bad.write_text("from tcfuzz.verdict.oracle import judge\n")
    try:
        assert "tcfuzz.model._layering_probe imports tcfuzz.verdict.oracle" in list(upward_imports())
    finally:
        bad.unlink()


def test_every_package_folder_is_installed():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {module_name(p.parent / "__init__.py") for p in sources() if p.name == "__init__.py"}
    assert set(config["packages"]) == on_disk
    assert all(name == "tcfuzz" or name.startswith("tcfuzz.") for name in config["packages"])


@pytest.mark.parametrize("bare", ["model", "fuzz", "jit_old", "jit_new"])
def test_no_bare_top_level_name_is_importable(bare):
    """The trap of a folder mapping: the same file imported as `model.world` and `tcfuzz.model.world`
    would split class identities. From the test run (and from the repo root) only `tcfuzz` imports."""
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(bare)
    probe = subprocess.run([sys.executable, "-P", "-c", f"import {bare}"], cwd=ROOT, capture_output=True, text=True)
    assert "ModuleNotFoundError" in probe.stderr


def test_the_wheel_installs_only_the_tcfuzz_package(tmp_path):
    """`pip install .` puts one import name in site-packages: tcfuzz (plus its metadata)."""
    import zipfile

    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("tcfuzz-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"tcfuzz"}
    assert "tcfuzz/jit_new/tail_call.py" in zipfile.ZipFile(wheel).namelist()
