"""`OnnxEncoder`: query vectors from a `sketchtext export-onnx` folder, run by onnxruntime with no torch installed.

The spec `onnx:DIR` names such a folder. It keeps the query-encoder contract exactly as the torch encoder it was
exported from (zero-shot `ClipEncoder` or `ComposedEncoder`): the same modes, the same fingerprint (so it queries
collections that model filled, and no others), the same preprocessing (PIL resize and crop, then normalise), the same
token sequences (`[SOT] P^L s^w words [EOT] pad…`, cut where the torch path cuts) and the same EOT pooling.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from sketchtext.plugin.errors import ConfigError, ModelError, ModelUnavailableError, QueryError
from sketchtext.plugin.model.query import (
    MAX_TEXT_CHARS,
    Combine,
    Mode,
    QueryInput,
    composed_modes,
    mix,
    query_mode,
)
from sketchtext.plugin.model.tokenizer import ClipTokenizer

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

FORMAT = "sketchtext-onnx/1"  # what plugin/model/onnx_export.py writes
MANIFEST = "manifest.json"
MERGES = "bpe_simple_vocab_16e6.txt.gz"


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():
        raise ModelUnavailableError(
            f"{folder} is not an ONNX export (it has no {MANIFEST}); make one with "
            "`sketchtext export-onnx --model SPEC [--checkpoint DIR] --out DIR`."
        )
    try:
        manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path} is not valid JSON ({exc}); export the model again.") from exc
    if manifest.get("format") != FORMAT:
        raise ModelError(f"{path} has format {manifest.get('format')!r}, not {FORMAT!r}; export the model again.")
    return manifest


class OnnxEncoder:
    """The query side of a CLIP model (with a checkpoint: its composed queries) on onnxruntime's CPU provider."""

    def __init__(self, folder: Path | str, *, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelUnavailableError(
                "An onnx: model spec needs onnxruntime; install it (pip install onnxruntime) or use an open_clip spec."
            ) from exc
        self.folder = Path(folder).expanduser()
        self.manifest = read_manifest(self.folder)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self._ort = ort

        def session(name: str) -> Any:
            return ort.InferenceSession(str(self.folder / name), options, providers=["CPUExecutionProvider"])

        self.image = session("image.onnx")
        self.text = session("text.onnx")
        composed = "checkpoint" in self.manifest
        self.converter = session("converter.onnx") if composed else None
        self.context = np.load(self.folder / "context.npy") if composed else None
        self.table: NDArray[np.float32] = np.load(self.folder / "token_embedding.npy", mmap_mode="r")
        text = self.manifest["text"]
        self.tokenizer = ClipTokenizer(self.folder / MERGES, int(text["context_length"]))
        self.n_ctx, self.trim, self.pad = int(text["context_length"]), bool(text["trim"]), int(text["pad"])
        self.dim = int(self.manifest["dim"])
        self.image_size = int(self.manifest["image_size"])
        pre = self.manifest["preprocess"]
        self.mean = np.asarray(pre["mean"], np.float32).reshape(1, 1, -1)
        self.std = np.asarray(pre["std"], np.float32).reshape(1, 1, -1)
        log.info("loaded ONNX export %s (%s)", self.folder, self.fingerprint)

    @property
    def fingerprint(self) -> str:
        return str(self.manifest["fingerprint"])

    @property
    def default_combine(self) -> str | None:
        """The checkpoint's measured best combine mode; None for a zero-shot export (which can only sum)."""
        return str(self.manifest["checkpoint"]["combine"]) if "checkpoint" in self.manifest else None

    # -- towers
    def pixels(self, image: Image.Image) -> NDArray[np.float32]:
        """open_clip's eval preprocess: the short side resized (PIL, as torchvision does it), centre crop, normalise."""
        from PIL import Image

        pre = self.manifest["preprocess"]
        image = image.convert("RGB")
        width, height = image.size
        side = int(pre["resize"])
        short, long = min(width, height), max(width, height)
        scaled = (side, int(side * long / short))
        size = scaled if width <= height else scaled[::-1]
        resample = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}.get(
            pre["interpolation"], Image.Resampling.NEAREST
        )
        if size != (width, height):
            image = image.resize(size, resample)
        crop_h, crop_w = pre["crop"]
        top, left = int(round((size[1] - crop_h) / 2.0)), int(round((size[0] - crop_w) / 2.0))
        if top < 0 or left < 0:
            raise QueryError(f"The image is smaller than the model's {crop_w}x{crop_h} crop after resizing.")
        array = np.asarray(image.crop((left, top, left + crop_w, top + crop_h)), dtype=np.float32) / np.float32(255)
        return ((array - self.mean) / self.std).transpose(2, 0, 1)

    def encode_images(self, images: Sequence[Image.Image]) -> NDArray[np.float32]:
        """Image-tower vectors, L2-normalised (N, D)."""
        if not images:
            return np.zeros((0, self.dim), np.float32)
        batch = np.stack([self.pixels(image) for image in images])
        return unit_rows(self.image.run(None, {"pixels": batch})[0])

    def sequences(self, rows: Sequence[NDArray[np.float32]]) -> NDArray[np.float32]:
        """The text tower over `[SOT] body [EOT]` for each row's body embeddings (k, d), L2-normalised (B, D); the
        body is cut to the context as `composer.assemble` cuts it."""
        table = self.table
        sot, eot = int(self.manifest["text"]["sot"]), int(self.manifest["text"]["eot"])
        bodies = []
        for body in rows:
            if body.shape[0] > self.n_ctx - 2:
                log.warning(
                    "query of %d tokens is longer than the model's context of %d; its text was truncated",
                    body.shape[0] + 2,
                    self.n_ctx,
                )
                body = body[: self.n_ctx - 2]
            bodies.append(body)
        ends = np.array([body.shape[0] + 1 for body in bodies], np.int64)
        length = int(ends.max()) + 1 if self.trim else self.n_ctx
        batch = np.broadcast_to(table[self.pad], (len(bodies), length, table.shape[1])).copy()
        for i, body in enumerate(bodies):
            batch[i, 0], batch[i, 1 : ends[i]], batch[i, ends[i]] = table[sot], body, table[eot]
        return unit_rows(self.text.run(None, {"embeddings": batch, "eot_index": ends})[0])

    def encode_texts(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """CLIP's text embedding of each text (as `encode_text` over open_clip's tokens), L2-normalised."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return self.sequences([self.table[self.tokenizer.sequence(text)[1:-1]] for text in texts])

    def words(self, text: str) -> NDArray[np.float32]:
        """T_w(text): the text's word embeddings (k, d), cut to MAX_TEXT_CHARS first as the torch path cuts it."""
        if len(text) > MAX_TEXT_CHARS:
            log.warning("text of %d characters cut to %d before tokenising", len(text), MAX_TEXT_CHARS)
            text = text[:MAX_TEXT_CHARS]
        return np.asarray(self.table[self.tokenizer.encode(text)], np.float32)

    # -- the contract
    def query_vectors(
        self, inputs: Sequence[QueryInput], combines: Sequence[Combine | None] | None = None
    ) -> tuple[NDArray[np.float32], list[Mode]]:
        """Query vectors for (sketch, text) pairs, one pass per tower, and the mode each was made with."""
        if self.converter is None or self.context is None:
            return self.zero_shot(inputs, combines)
        modes = composed_modes(inputs, combines, str(self.default_combine))
        sketch_rows = [i for i, (s, _) in enumerate(inputs) if s is not None]
        text_rows = [i for i, mode in enumerate(modes) if mode in ("text", "sum", "fusion")]
        texts = dict(zip(text_rows, self.encode_texts([inputs[i][1] or "" for i in text_rows]), strict=True))
        composed: dict[int, NDArray[np.float32]] = {}
        images: dict[int, NDArray[np.float32]] = {}
        if sketch_rows:
            features = self.encode_images([s for s, _ in inputs if s is not None])
            pseudo = self.converter.run(None, {"features": features})[0]
            rows = []
            for j, i in enumerate(sketch_rows):
                tail = [self.words(inputs[i][1] or "")] if modes[i] in ("composed", "fusion") else []
                rows.append(np.concatenate([self.context, pseudo[j : j + 1], *tail]))
            composed = dict(zip(sketch_rows, self.sequences(rows), strict=True))
            images = dict(zip(sketch_rows, features, strict=True))
        return mix(modes, self.dim, composed, images, texts), modes

    def zero_shot(
        self, inputs: Sequence[QueryInput], combines: Sequence[Combine | None] | None
    ) -> tuple[NDArray[np.float32], list[Mode]]:
        """An export without a checkpoint: sketch = image vector, text = text vector, both = their normalised sum."""
        for (sketch, text), combine in zip(inputs, combines or [None] * len(inputs), strict=True):
            if sketch is not None and text and combine not in (None, "sum"):
                raise QueryError(
                    f"Combine mode {combine!r} needs a trained checkpoint: export the model with --checkpoint; "
                    "without one a sketch and text are summed (combine='sum')."
                )
        modes = [query_mode(*pair) for pair in inputs]
        sketch_rows = [i for i, (s, _) in enumerate(inputs) if s is not None]
        text_rows = [i for i, (_, t) in enumerate(inputs) if t]
        images = dict(zip(sketch_rows, self.encode_images([s for s, _ in inputs if s is not None]), strict=True))
        texts = dict(zip(text_rows, self.encode_texts([inputs[i][1] or "" for i in text_rows]), strict=True))
        return mix(modes, self.dim, images, images, texts), modes


def unit_rows(matrix: NDArray[Any]) -> NDArray[np.float32]:
    matrix = np.asarray(matrix, np.float32)
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), np.float32(1e-12))


def open_export(folder: Path, checkpoint: Path | None = None) -> OnnxEncoder:
    """The encoder for an `onnx:DIR` spec; a checkpoint setting beside it is a mistake (the export carries its own)."""
    if checkpoint is not None:
        raise ConfigError(
            f"The ONNX export {folder} carries its checkpoint already; unset --checkpoint / "
            "SKETCHTEXT_MODEL__CHECKPOINT (export another checkpoint with `sketchtext export-onnx --checkpoint DIR`)."
        )
    return OnnxEncoder(folder)
