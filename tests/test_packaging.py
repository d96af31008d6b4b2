"""The package as a user installs it: a wheel built from the sources, installed into a fresh
virtual environment, run from a folder outside the repository.

The fresh venv sees the running interpreter's site-packages through a ``.pth`` path line (so
torch & co. are not reinstalled: a bare path line adds the folder to ``sys.path`` without
running that folder's own ``.pth`` files, so the editable install of the repository there stays
out), and ecg-sweep itself comes only from the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _clean_env() -> dict[str, str]:
    """No PYTHONPATH (a checkout on it would shadow the wheel), no user site."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, env=_clean_env(), timeout=600
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A venv with ecg-sweep installed from a wheel built off a copy of the sources."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(
        REPO / "ecg_sweep", src / "ecg_sweep", ignore=shutil.ignore_patterns("__pycache__")
    )
    # --no-build-isolation: the build backend (setuptools) of this interpreter, offline.
    r = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", str(src), "-w", str(tmp / "dist")],
        cwd=tmp,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # The setuptools deprecation wall (project.license as a table, ...) is gone.
    assert "deprecated" not in (r.stdout + r.stderr).lower(), r.stdout + r.stderr
    (wheel,) = (tmp / "dist").glob("ecg_sweep-*.whl")
    venv = tmp / "venv"
    r = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp)
    assert r.returncode == 0, r.stderr
    py = venv / "bin" / "python"
    purelib = _run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp
    ).stdout.strip()
    r = _run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index",
         str(wheel)],
        cwd=tmp,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # Only now the shared packages: with them on the path first, pip would find the repository's
    # editable ecg-sweep there and skip the wheel.
    shared = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(purelib, "_shared_site_packages.pth").write_text("\n".join(sorted(shared)) + "\n")
    return venv


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_repo(installed, tmp_path):
    venv = installed
    exe = venv / "bin" / "ecg-sweep"
    # ecg_sweep is imported from the venv, not from the repository or its editable install.
    r = _run([str(venv / "bin" / "python"), "-c", "import ecg_sweep; print(ecg_sweep.__file__)"],
             cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()).is_relative_to(venv), r.stdout
    # Every declared dependency is importable metadata-wise (a missing one fails here).
    check = (
        "import importlib.metadata as m\n"
        "from packaging.requirements import Requirement\n"
        "bad = []\n"
        "for text in m.requires('ecg-sweep') or []:\n"
        "    req = Requirement(text)\n"
        "    if req.marker is not None and not req.marker.evaluate({'extra': ''}):\n"
        "        continue\n"
        "    try:\n"
        "        v = m.version(req.name)\n"
        "    except m.PackageNotFoundError:\n"
        "        bad.append(f'{req.name}: not installed'); continue\n"
        "    if not req.specifier.contains(v, prereleases=True):\n"
        "        bad.append(f'{req.name} {v} does not satisfy {req.specifier}')\n"
        "print('\\n'.join(bad))\n"
    )
    r = _run([str(venv / "bin" / "python"), "-c", check], cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "", r.stdout + r.stderr

    r = _run([str(exe), "--help"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Usage" in r.stdout and "dashboard" in r.stdout and "optimize" in r.stdout
    # data synth reads scp_statements.csv from the package data inside the wheel.
    r = _run([str(exe), "data", "synth", "--out", "ds", "--n-records", "30"], cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "ds" / "scp_statements.csv").stat().st_size > 1000
    r = _run([str(exe), "data", "inspect", "ds", "--json"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["records"] == 30 and report["bad_records"] == []
