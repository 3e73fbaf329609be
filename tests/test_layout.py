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


def heavy_modules_after(imports: str) -> list[str]:
    """The heavy dependencies and front ends a fresh interpreter holds after running `imports`."""
    code = (
        f"import sys, json; {imports};"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'open_clip', 'celery', 'click')"
        " or m.startswith(('sketchtext.cli', 'sketchtext.workers')))))"
    )
    return json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def test_importing_the_library_loads_no_heavy_dependency() -> None:
    assert heavy_modules_after("import sketchtext.plugin, sketchtext.plugin.facade, sketchtext.plugin.search") == []
    public = "from sketchtext.plugin import SketchTextPlugin, SketchTextQuery, SearchHit, EncodedQuery, load_settings"
    assert heavy_modules_after(public) == []


def test_plugin_top_level_holds_only_the_public_entry_points() -> None:
    modules = sorted(p.stem for p in (REPO / "plugin").glob("*.py"))
    assert modules == ["__init__", "errors", "facade", "files", "images", "search", "settings"]
    assert (REPO / "plugin" / "db" / "__init__.py").is_file()  # the metadata database: MetadataDB and its tables
    for source in REPO.glob("*/**/*.py"):
        if ".venv" not in source.parts:
            assert len(source.read_text().splitlines()) <= 450, f"{source} is over 450 lines: split it"


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
