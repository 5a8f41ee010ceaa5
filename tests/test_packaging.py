"""A plain `pip install .` must ship every subpackage (the layout maps folders onto kws_kit)."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_python_package_folder_is_declared():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = set(config["packages"])
    mapping = config["package-dir"]
    found = set()
    for name, folder in mapping.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            if any(part.startswith((".", "_")) or part in ("build",) for part in rel.parts):
                continue
            dotted = ".".join((name, *rel.parts)) if rel.parts else name
            # a folder that is itself mapped elsewhere (e.g. nested mapping) is covered by its own entry
            found.add(dotted)
    missing = sorted(found - declared)
    assert not missing, f"add to [tool.setuptools] packages: {missing}"


def test_plain_install_ships_device_boards_and_models_files(tmp_path):
    """Build the wheel that a non-editable `pip install .` installs and look inside it."""
    import shutil
    import subprocess
    import sys
    import zipfile

    import pytest

    src = tmp_path / "src"  # a copy, so the build leaves no build/ or egg-info in the checkout
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info", "*.partial")
    for folder in ("trainer", "device", "boards", "models"):
        shutil.copytree(ROOT / folder, src / folder, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, src / name)
    run = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "w"), str(src)],
        capture_output=True, text=True,
    )
    if run.returncode != 0 and "No module named" in run.stderr:
        pytest.skip(f"cannot build a wheel here: {run.stderr.strip().splitlines()[-1]}")
    assert run.returncode == 0, run.stderr
    (wheel,) = (tmp_path / "w").glob("kws_kit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {"kws_kit/cli.py", "kws_kit/data/curate.py"}
    for folder in ("device", "boards", "models"):
        for path in (src / folder).rglob("*"):
            if path.is_file():
                expected.add(f"kws_kit/{folder}/{path.relative_to(src / folder).as_posix()}")
    missing = sorted(expected - names)
    assert not missing, f"not in the wheel (add to [tool.setuptools.package-data]): {missing[:10]}"
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "kws-kit = kws_kit.cli:run" in zipfile.ZipFile(wheel).read(entry_points).decode()
