"""Writing files so that a crash leaves either the old file or the new one, never a torn one."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` durably: the bytes and the rename both reach the disk before this returns."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """`write_atomic` for a JSON document (indented, keys sorted, so diffs stay readable)."""
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True).encode("utf-8"))
