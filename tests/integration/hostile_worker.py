"""`sketchtext worker` with the fault-injecting decoder of `tests/hostile.py` registered in its process, so files that
name an exception raise it inside the worker's own decoding, as a real decoder bug would.

Run as a script (not collected by pytest): `python hostile_worker.py worker ...`. Nothing of it is in the product.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # `tests` importable, wherever the worker starts

from sketchtext.cli.main import main  # noqa: E402
from tests.hostile import hostile_plugin  # noqa: E402

if __name__ == "__main__":
    with hostile_plugin():
        main(prog_name="sketchtext")
