"""int8 on the CPU: the image tower exported once to ONNX, quantised by onnxruntime's dynamic int8 and run by it,
admitted only when it agrees with fp32 on the check photos.

The export lives in `<models dir>/int8/<fingerprint slug>/` (`image.int8.onnx` and `manifest.json`), made once per
model fingerprint (a checkpoint's tuned norms are in the fingerprint and in the export) and reused by every later
load; a lock keeps two processes from exporting the same model at once. The text tower and C_v2w stay in torch.
Where the tower has patch tokens (a ViT, or a timm CNN's feature-map cells), the graph gives them beside the features
in the same pass, so a collection with photo regions is ingested at int8 speed too; its regions pass the same check
(pooled as the store pools them) or stay on the torch fp32 tower while the global vectors use int8.

The rule for collections: an int8 tower is used only when it passes the same check `auto` runs for bf16/fp16 (lowest
cosine and top-10 neighbour overlap against fp32), so its vectors keep the model's fingerprint and share collections
with fp32 (and bf16) vectors of the same model, both ways; a tower that fails is never used, so no vector of it is
ever stored or queried.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from sketchtext.plugin.errors import ModelUnavailableError
from sketchtext.plugin.files import write_atomic
from sketchtext.plugin.model.precision import AUTO_MIN_COSINE, AUTO_MIN_TOP10_OVERLAP, agreement, agrees, check_photos

if TYPE_CHECKING:
    from sketchtext.plugin.model.clip import ClipEncoder

log = logging.getLogger(__name__)

FORMAT = "sketchtext-int8/2"  # /2: the graph also gives the patch tokens
GRAPH = "image.int8.onnx"
MANIFEST = "manifest.json"
# onnxruntime's dynamic quantisation: int8 weights, one scale per output channel (closer to fp32 on the check photos
# than one per tensor for ViT-B-32 and ViT-S-32; speed alike within one busy-machine run), activations per batch.
# MatMuls only: onnxruntime's ConvInteger ran slower than its fp32 Conv and further from fp32 (a ViT's one conv is its
# patch embedding; a CNN tower keeps its convs in fp32), as onnxruntime advises dynamic int8 for transformers.
QUANTISATION: dict[str, Any] = {"weight_type": "QInt8", "per_channel": True, "op_types": ["MatMul"]}


def require_runtime() -> None:
    """Raise the fix when onnxruntime, onnx or onnxscript (torch's exporter) is missing."""
    import importlib.util

    missing = [name for name in ("onnxruntime", "onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise ModelUnavailableError(
            f"Precision int8 needs {', '.join(missing)}; install them (pip install 'sketchtext[onnx]') or use "
            "--precision fp32."
        )


def default_models_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("sketchtext", appauthor=False)) / "models"


def tower_folder(models_dir: Path, fingerprint: str) -> Path:
    """Where a fingerprint's export lives: readable, and unique by a hash (fingerprints hold '@', '+', ':')."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", fingerprint)[:60]
    return models_dir / "int8" / f"{readable}-{hashlib.sha256(fingerprint.encode()).hexdigest()[:12]}"


class Int8Tower:
    """The quantised image tower in an onnxruntime session: preprocessed float32 pixels (N, 3, H, W) to features,
    and to the projected patch tokens (N, h, w, D) when the graph has them (`has_tokens`); `regions` says whether the
    tokens passed the agreement check (`admit_int8`)."""

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # the cores the model may use; onnxruntime's default takes them all
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle threads sleep instead of spinning: spinning after each run took the cores decode threads need between
        # forwards (ingest's ModelTurn), and on a shared CPU it burns this process's share (tests/benchmarks/README).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.outputs = [output.name for output in self.session.get_outputs()]
        self.has_tokens = len(self.outputs) == 2
        self.regions = False

    def __call__(self, pixels: NDArray[np.float32]) -> NDArray[np.float32]:
        return self.run(pixels, self.outputs[:1])[0]

    def with_tokens(self, pixels: NDArray[np.float32]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """(features (N, D), projected patch tokens (N, h, w, D)) of one pass."""
        features, tokens = self.run(pixels, self.outputs)
        return features, tokens

    def run(self, pixels: NDArray[np.float32], outputs: list[str]) -> list[NDArray[np.float32]]:
        got = self.session.run(outputs, {self.input: np.ascontiguousarray(pixels, np.float32)})
        return [np.asarray(output, np.float32) for output in got]


def build_tower(encoder: ClipEncoder, folder: Path) -> None:
    """Export the encoder's image tower (fp32, with its tuned norms), pre-process and quantise it into `folder`."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from sketchtext.plugin.model.onnx_graph import ImageTokenTower, ImageTower, export_graph

    side = encoder.image_size
    pixels = torch.zeros(2, 3, side, side)
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=folder.parent))
    try:
        tokens = has_tokens(encoder.model, pixels)
        if tokens:
            tower = ImageTokenTower(encoder.model)
            export_graph(tower, (pixels,), work / "fp32.onnx", ["pixels"], outputs=("features", "tokens"))
        else:
            export_graph(ImageTower(encoder.model), (pixels,), work / "fp32.onnx", ["pixels"], outputs=("features",))
        quant_pre_process(str(work / "fp32.onnx"), str(work / "pre.onnx"))  # shapes and fusions the quantiser needs
        weights = getattr(QuantType, str(QUANTISATION["weight_type"]))
        quantize_dynamic(
            work / "pre.onnx",
            work / GRAPH,
            weight_type=weights,
            per_channel=bool(QUANTISATION["per_channel"]),
            op_types_to_quantize=list(QUANTISATION["op_types"]),
        )
        (work / "fp32.onnx").unlink()
        (work / "pre.onnx").unlink()
        manifest = {
            "format": FORMAT,
            "fingerprint": encoder.fingerprint,
            "image_size": side,
            "quantisation": QUANTISATION,
            "tokens": tokens,
            "versions": export_versions(),
        }
        write_atomic(work / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
        if folder.exists():  # a stale or broken export
            shutil.rmtree(folder)
        os.replace(work, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("exported the int8 image tower of %s to %s", encoder.fingerprint, folder)


def has_tokens(model: Any, pixels: Any) -> bool:
    """Whether the image tower gives projected patch tokens (or feature-map cells), the photo regions' source."""
    import torch

    from sketchtext.plugin.errors import ConfigError
    from sketchtext.plugin.model.composer import image_tokens

    try:
        with torch.inference_mode():
            image_tokens(model, pixels.to(next(model.parameters()).device))
    except ConfigError:  # neither a ViT with tokens nor a timm CNN with a linear head
        return False
    return True


def export_versions() -> dict[str, str]:
    from importlib import metadata

    return {name: metadata.version(name) for name in ("torch", "onnx", "onnxruntime")}


def cached_tower(encoder: ClipEncoder, models_dir: Path) -> Path:
    """The int8 graph of the encoder's image tower: the one exported earlier for its fingerprint, else a new one."""
    from filelock import FileLock

    folder = tower_folder(models_dir, encoder.fingerprint)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if not current(folder, encoder.fingerprint):
            build_tower(encoder, folder)
        else:
            log.info("reusing the int8 image tower in %s", folder)
    return folder / GRAPH


def current(folder: Path, fingerprint: str) -> bool:
    """Whether `folder` holds a finished export of this fingerprint in this format."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        manifest.get("format") == FORMAT
        and manifest.get("fingerprint") == fingerprint
        and manifest.get("quantisation") == QUANTISATION
        and (folder / GRAPH).is_file()
    )


Agreement = tuple[float, float]  # (lowest cosine, mean top-10 overlap), as `precision.agreement` measures


def int8_agreement(encoder: ClipEncoder, tower: Int8Tower) -> tuple[Agreement, Agreement | None]:
    """The agreement between the encoder's fp32 image tower and `tower` on the check photos: of the features, and of
    the region vectors pooled at the encoder's grid (None when the graph has no tokens)."""
    import torch

    from sketchtext.plugin.model.composer import image_tokens, pool_regions

    pixels = encoder.preprocess_images(check_photos())
    with torch.inference_mode():
        on_device = pixels.to(encoder.device, encoder.dtype)
        if not tower.has_tokens:
            return agreement(encoder.model.encode_image(on_device), tower(pixels.numpy())), None
        reference, reference_tokens = image_tokens(encoder.model, on_device)
    features, tokens = tower.with_tokens(pixels.numpy())
    grid = encoder.region_grid
    regions = pool_regions(torch.from_numpy(tokens), grid).flatten(0, 1)
    return agreement(reference, features), agreement(pool_regions(reference_tokens, grid).flatten(0, 1), regions)


def admit_int8(encoder: ClipEncoder, models_dir: Path | None = None) -> bool:
    """Give the encoder the int8 image tower when it agrees with fp32; else leave it on fp32, saying why."""
    import torch

    try:
        tower = Int8Tower(cached_tower(encoder, models_dir or default_models_dir()), threads=torch.get_num_threads())
    except Exception as exc:  # torch's exporter and onnxruntime raise many types for a model they cannot take
        log.warning("int8 refused for %s: its image tower could not be exported (%s); using fp32", encoder.fingerprint,
                    exc)  # fmt: skip
        log.debug("int8 export failed", exc_info=True)
        return False
    (cosine, overlap), regions = int8_agreement(encoder, tower)
    measured = {"cosine": round(cosine, 6), "top10_overlap": round(overlap, 4)}
    if regions is not None:
        measured |= {"regions_cosine": round(regions[0], 6), "regions_top10_overlap": round(regions[1], 4)}
    encoder.agreement = {"int8": measured}
    if not agrees(cosine, overlap):
        log.warning(
            "int8 refused for %s: against fp32 on the check photos its lowest cosine is %.5f and its top-10 overlap "
            "%.3f (needs %.3f and %.2f); using fp32",
            encoder.fingerprint,
            cosine,
            overlap,
            AUTO_MIN_COSINE,
            AUTO_MIN_TOP10_OVERLAP,
        )
        return False
    log.info("precision int8 for %s: agrees with fp32 at cosine %.5f, top-10 overlap %.3f", encoder.fingerprint,
             cosine, overlap)  # fmt: skip
    if regions is not None:
        tower.regions = agrees(*regions)
        if not tower.regions:
            log.warning(
                "int8 regions refused for %s: against fp32 on the check photos their lowest cosine is %.5f and their "
                "top-10 overlap %.3f; photo regions stay fp32",
                encoder.fingerprint,
                *regions,
            )
    encoder.image_tower = tower
    return True
