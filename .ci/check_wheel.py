"""Build the wheel and check it holds every package, every data file and working entry points.

Run by .ci/run with the project's venv: `python .ci/check_wheel.py`. Exits non-zero with a list of what is missing.
"""

from __future__ import annotations

import configparser
import importlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"plugin": "sketchtext/plugin", "workers": "sketchtext/workers", "cli": "sketchtext/cli"}
FOLDERS["migrations"] = "sketchtext/migrations"
DATA = (".json", ".txt", ".jpg", ".png", ".js", ".html", ".css", ".safetensors", ".md", ".ini", ".mako", ".typed")


def tracked_tree(dest: Path) -> None:
    """Copy the files git knows (tracked and not ignored) to `dest`: a build there sees no leftover egg-info or
    build/ folder, which would otherwise smuggle files into the wheel and hide a package missing from the list."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO, capture_output=True, text=True
    )
    for name in listed.stdout.split("\n"):
        if name and (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)


def expected_files() -> set[str]:
    """What the wheel must hold: every tracked module and data file of the four folders, under `sketchtext/`."""
    tracked = subprocess.run(["git", "ls-files", *FOLDERS], cwd=REPO, capture_output=True, text=True, check=True)
    wanted = set()
    for name in tracked.stdout.split():
        folder, _, rest = name.partition("/")
        if name.endswith(".py") or name.endswith(DATA):
            wanted.add(f"{FOLDERS[folder]}/{rest}")
    return wanted


def main() -> int:
    with tempfile.TemporaryDirectory() as out, tempfile.TemporaryDirectory() as tree:
        tracked_tree(Path(tree))
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check", "-w", out, "."],
            cwd=tree,
            check=True,
        )
        (wheel,) = Path(out).glob("sketchtext-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            names = set(archive.namelist())
            (entry_file,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
            entry_points = configparser.ConfigParser()
            entry_points.read_string(archive.read(entry_file).decode())
    problems = [f"missing from the wheel: {name}" for name in sorted(expected_files() - names)]
    targets = [value for section in entry_points.sections() for _, value in entry_points.items(section)]
    targets.append("sketchtext.workers.app:app")  # what `celery -A` and `sketchtext worker` load
    for target in targets:
        module, _, attr = target.partition(":")
        try:
            getattr(importlib.import_module(module), attr)
        except Exception as exc:  # any failure to resolve is the finding
            problems.append(f"entry point {target} does not resolve: {exc!r}")
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"wheel {wheel.name}: {len(names)} files, {len(targets)} entry points, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
