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
