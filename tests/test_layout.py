"""The package layout: one namespace over the card's folders, and a light import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import sketchtext.cli
import sketchtext.migrations
import sketchtext.plugin
import sketchtext.workers

REPO = Path(__file__).resolve().parents[1]


def test_folders_map_into_one_namespace() -> None:
    for module, folder in [
        (sketchtext.plugin, "plugin"),
        (sketchtext.cli, "cli"),
        (sketchtext.workers, "workers"),
        (sketchtext.migrations, "migrations"),
    ]:
        assert Path(module.__file__).parent.name == folder


def test_importing_the_library_loads_no_heavy_dependency() -> None:
    code = (
        "import sys, json, sketchtext.plugin, sketchtext.plugin.facade, sketchtext.plugin.search;"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'open_clip', 'celery')"
        " or m.startswith(('sketchtext.cli', 'sketchtext.workers')))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


def test_the_public_names_import_from_the_package_without_heavy_dependencies() -> None:
    code = (
        "import sys, json;"
        "from sketchtext.plugin import SketchTextPlugin, SketchTextQuery, SearchHit, EncodedQuery, load_settings;"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'open_clip', 'celery', 'click')"
        " or m.startswith(('sketchtext.cli', 'sketchtext.workers')))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


def test_plugin_top_level_holds_only_the_public_entry_points() -> None:
    modules = sorted(p.stem for p in (REPO / "plugin").glob("*.py"))
    assert modules == ["__init__", "db", "errors", "facade", "files", "images", "search", "settings"]
    for source in REPO.glob("*/**/*.py"):
        if ".venv" not in source.parts:
            assert len(source.read_text().splitlines()) <= 450, f"{source} is over 450 lines: split it"


def test_every_package_folder_is_in_the_wheel_list() -> None:
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    for init in list((REPO / "plugin").rglob("__init__.py")) + list((REPO / "migrations").rglob("__init__.py")):
        parts = init.parent.relative_to(REPO).parts
        assert "sketchtext." + ".".join(parts) in listed, f"{init.parent} is missing from pyproject's packages"


def test_library_code_never_imports_the_front_ends() -> None:
    # click itself may arrive through httpx (qdrant-client); the rule is about our own imports.
    for source in (REPO / "plugin").rglob("*.py"):
        text = source.read_text()
        for banned in (
            "import click",
            "from click",
            "import celery",
            "from celery",
            "sketchtext.cli",
            "sketchtext.workers",
        ):
            assert banned not in text, f"{source.name} imports {banned.split()[-1]}"
