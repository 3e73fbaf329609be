"""The generated hostile corpus decoded as ingest decodes it: counts by outcome, and the time per file. Prints JSON.

python -m tests.benchmarks.bench_hostile
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import Counter
from pathlib import Path

from sketchtext.plugin.errors import ImageError
from sketchtext.plugin.images import decode_image
from tests.hostile import hostile_plugin, write_damaged_corpus, write_injected

OUTCOMES = (
    "uses an unsupported",
    "cannot be decoded as",
    "is not an image",
    "decompression bomb",
    "resized to",
    "is empty",
    "needs more memory",
)


def outcome(data: bytes, key: str) -> str:
    try:
        decode_image(data, name=key, draft_size=224, fit_side=224)
    except ImageError as exc:
        return next((kind for kind in OUTCOMES if kind in str(exc)), "other ImageError")
    return "decoded"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, hostile_plugin():
        root = Path(tmp)
        expect = write_damaged_corpus(root)
        write_injected(root, expect)
        files = {key: (root / key).read_bytes() for key in expect}
        started = time.perf_counter()
        counts = Counter(outcome(data, key) for key, data in files.items())
        seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "files": len(files),
                "by_outcome": dict(counts.most_common()),
                "ms_per_file": round(1000 * seconds / len(files), 2),
            }
        )
    )


if __name__ == "__main__":
    main()
