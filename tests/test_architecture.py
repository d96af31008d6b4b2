"""The package's shape: unique module names, private modules stay private, ``__all__`` is the
truth, and every MLflow name is spelled once (in ``tracking/contract.py``).

The layer order itself is enforced by import-linter (``lint-imports`` in ``make test``, contracts
in pyproject.toml); :func:`test_import_linter_contracts_hold` runs it too, so ``pytest`` alone
catches an upward import.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "ecg_sweep"
SOURCES = sorted(PKG.rglob("*.py"))


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every ``from ecg_sweep... import ...`` in ``path``."""
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("ecg_sweep"):
                out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("ecg_sweep"):
                    out.append((a.name, []))
    return out


def _all_of(path: Path) -> list[str] | None:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    return None


def _path_of(module: str) -> Path | None:
    base = REPO / Path(*module.split("."))
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.is_file():
            return p
    return None


def test_no_two_modules_share_a_name():
    names = defaultdict(list)
    for p in SOURCES:
        if p.name == "__main__.py":
            continue
        name = p.parent.name if p.name == "__init__.py" else p.stem
        names[name].append(str(p.relative_to(REPO)))
    clashes = {k: v for k, v in names.items() if len(v) > 1}
    assert not clashes, clashes


def test_private_modules_are_imported_only_inside_their_package():
    bad = []
    for p in SOURCES:
        here = _module_name(p)
        for module, _ in _imports(p):
            parts = module.split(".")
            for i, part in enumerate(parts):
                if part.startswith("_") and not part.startswith("__"):
                    package = ".".join(parts[:i])
                    if not (here == package or here.startswith(package + ".")):
                        bad.append(f"{p.relative_to(REPO)} imports {module}")
    assert not bad, bad


def test_all_lists_what_other_modules_import():
    """A name imported from another ecg_sweep module is in that module's ``__all__``, and every
    name in an ``__all__`` exists."""
    bad = []
    users = SOURCES + sorted((REPO / "tests").glob("*.py")) + sorted(REPO.glob("benchmarks/*.py"))
    for p in users:
        for module, names in _imports(p):
            target = _path_of(module)
            if target is None or target == p:
                continue
            declared = _all_of(target)
            if declared is None:
                continue
            for n in names:
                sub = _path_of(f"{module}.{n}")
                if n not in declared and sub is None:
                    bad.append(f"{p.relative_to(REPO)}: {module}.{n} not in __all__")
    for p in SOURCES:
        declared = _all_of(p) or []
        tree = ast.parse(p.read_text())
        defined = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                defined |= {t.id for t in targets if isinstance(t, ast.Name)}
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                defined |= {(a.asname or a.name).split(".")[0] for a in node.names}
        bad += [
            f"{p.relative_to(REPO)}: __all__ names undefined {n}"
            for n in declared
            if n not in defined
        ]
    assert not bad, "\n".join(bad)


def _contract_literals() -> dict[str, str]:
    """Module-level string constants of the contract that are tags or artifact paths."""
    tree = ast.parse((PKG / "tracking" / "contract.py").read_text())
    out = {}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            value = node.value.value
            # Namespaced tags and artifact paths; plain words ("model") are also dict keys.
            if re.search(r"[./]", value):
                out[node.targets[0].id] = value
    return out


def test_every_tag_and_artifact_name_is_spelled_once():
    literals = _contract_literals()
    assert "KIND_TAG" in literals and "THRESHOLDS_ARTIFACT" in literals
    prefixes = ("study-", "trial-", "compress-", "train-", "ecg-{")
    bad = []
    for p in SOURCES:
        if p.name == "contract.py":
            continue
        text = p.read_text()
        for name, value in literals.items():
            if re.search(rf"[\"'`]{re.escape(value)}[\"'`]", text):
                bad.append(f"{p.relative_to(REPO)} spells {name} ({value!r})")
        for prefix in prefixes:
            if re.search(rf"f[\"']{re.escape(prefix)}", text):
                bad.append(f"{p.relative_to(REPO)} builds a name with {prefix!r}")
    assert not bad, "\n".join(bad)


def test_reference_configuration_is_the_defined_term():
    """'the seed' meant the original course project's configuration and clashed with --seed."""
    texts = [*SOURCES, REPO / "README.md", *sorted((REPO / "scripts").glob("*"))]
    bad = [
        str(p.relative_to(REPO))
        for p in texts
        if re.search(r"\bthe seed's\b|\bseed's\b|\bseed configuration\b", p.read_text(), re.I)
    ]
    assert not bad, bad


@pytest.mark.skipif(
    shutil.which("lint-imports") is None
    and not (Path(sys.executable).parent / "lint-imports").exists(),
    reason="import-linter not installed",
)
def test_import_linter_contracts_hold():
    exe = Path(sys.executable).parent / "lint-imports"
    r = subprocess.run(
        [str(exe) if exe.exists() else "lint-imports"], cwd=REPO, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout[-3000:]
