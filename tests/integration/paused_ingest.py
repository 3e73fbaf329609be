"""`sketchtext` whose decoder pauses on one file until the test says go, so a test acts while an ingest holds the store.

Run as a script (not collected by pytest): `python paused_ingest.py ingest ...`. A file starting with PAUSE makes
the decoder touch $SKETCHTEXT_TEST_PAUSED, wait for $SKETCHTEXT_TEST_RESUME to exist, then fail that file.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from PIL import Image, ImageFile

from sketchtext.cli.main import main


class PausingImageFile(ImageFile.ImageFile):
    format = "PAUSE"
    format_description = "waits for the test"

    def _open(self) -> None:
        Path(os.environ["SKETCHTEXT_TEST_PAUSED"]).touch()
        while not Path(os.environ["SKETCHTEXT_TEST_RESUME"]).exists():
            time.sleep(0.02)
        raise NotImplementedError("a paused test file")


if __name__ == "__main__":
    Image.init()
    Image.register_open(PausingImageFile.format, PausingImageFile, lambda prefix: prefix.startswith(b"PAUSE"))
    main(prog_name="sketchtext")
