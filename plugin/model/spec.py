"""Model specs (`open_clip:ARCH[@TAG_OR_PATH]`), their fingerprints, and building the open_clip model they name.

torch and open_clip are imported inside functions so that importing the library stays light.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import sys
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from sketchtext.plugin.errors import ConfigError, ModelError, ModelUnavailableError, SketchTextError
from sketchtext.plugin.model.hub import unavailable_message, weights_from_hub

log = logging.getLogger(__name__)

RANDOM_INIT_SEED = 0
CHECKPOINT_SUFFIXES = (".bin", ".pt", ".pth", ".safetensors")


EXPORT_BACKEND = "onnx"  # `onnx:DIR`: a `sketchtext export-onnx` folder, for query encoding without torch


def export_folder(spec: str) -> Path | None:
    """The folder an `onnx:DIR` spec names; None for any other spec."""
    backend, _, rest = spec.partition(":")
    return Path(rest).expanduser() if backend == EXPORT_BACKEND and rest else None


@dataclass(frozen=True)
class ModelSpec:
    """`open_clip:ARCH[@TAG_OR_PATH]`: an open_clip architecture with a pretrained tag, a local file, or nothing
    (seeded random weights, for tests and the generated miniature)."""

    arch: str
    weights: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        backend, sep, rest = text.partition(":")
        if backend == EXPORT_BACKEND:
            raise ConfigError(
                f"Model spec {text!r} names an ONNX export, which encodes queries only; ingest, train and evaluate "
                "with the open_clip model it was exported from (its manifest.json names it under 'source')."
            )
        if not sep or backend != "open_clip" or not rest:
            raise ConfigError(
                f"Model spec {text!r} is not of the form 'open_clip:ARCH[@TAG_OR_PATH]', "
                "e.g. 'open_clip:ViT-B-32@laion2b_s34b_b79k' or 'open_clip:ViT-B-32@/models/clip.safetensors'."
            )
        arch, _, weights = rest.partition("@")
        return cls(arch=arch, weights=weights or None)

    @property
    def weights_path(self) -> Path | None:
        """The local checkpoint file named by the spec, if it names one."""
        if self.weights is None:
            return None
        if "/" in self.weights or self.weights.endswith(CHECKPOINT_SUFFIXES) or Path(self.weights).exists():
            return Path(self.weights).expanduser()
        return None

    def __str__(self) -> str:
        return f"open_clip:{self.arch}" + (f"@{self.weights}" if self.weights else "")


def register_bundled_configs() -> None:
    """Make the architectures shipped in `sketchtext.plugin.data` (e.g. `sketchtext-tiny`) known to open_clip."""
    import open_clip

    with resources.as_file(resources.files("sketchtext.plugin.data")) as folder:
        for config in sorted(Path(folder).glob("*.json")):
            if config.stem not in open_clip.list_models():
                open_clip.add_model_config(config)


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def weights_file(spec: ModelSpec) -> Path | None:
    """The spec's local weights file, checked to exist (None when the spec names a tag or nothing)."""
    path = spec.weights_path
    if path is not None and not path.is_file():
        raise ModelUnavailableError(f"Checkpoint file {path} does not exist; check the path in the model spec.")
    return path


def weights_fingerprint(spec: ModelSpec) -> str:
    """What identifies the weights: a tag, a file's content hash, or the random-init seed."""
    path = weights_file(spec)
    if path is not None:
        return f"{spec.arch}@sha256:{file_digest(path)[:16]}"
    if spec.weights:
        return f"{spec.arch}@{spec.weights}"
    return f"{spec.arch}@random-seed{RANDOM_INIT_SEED}"


def model_fingerprint(spec: str, checkpoint: Path | None = None) -> str:
    """The fingerprint `load_encoder(spec, checkpoint=...)` gives its encoder, without building the model (and
    without importing torch when there is no checkpoint)."""
    base = weights_fingerprint(ModelSpec.parse(spec))
    if checkpoint is None:
        return base
    from sketchtext.plugin.model.checkpoint import read_checkpoint

    return f"{base}+{read_checkpoint(checkpoint).fingerprint}"


def unknown_architecture(arch: str, known: Iterable[str]) -> ConfigError:
    choices = ", ".join(sorted(m for m in known if m.startswith(("ViT-B", "ViT-L", "sketchtext"))))
    return ConfigError(
        f"Unknown open_clip architecture {arch!r}. Valid choices include: {choices} (see open_clip.list_models())."
    )


def known_architectures() -> set[str]:
    """open_clip's architectures and the bundled ones, read from their config files unless open_clip is loaded (it
    brings torch, seconds on a small machine)."""
    with resources.as_file(resources.files("sketchtext.plugin.data")) as folder:
        names = {config.stem for config in Path(folder).glob("*.json")}
    if "open_clip" in sys.modules:
        return names | set(sys.modules["open_clip"].list_models())
    found = importlib.util.find_spec("open_clip")
    for location in (found.submodule_search_locations or []) if found else []:
        names |= {config.stem for config in Path(location, "model_configs").glob("*.json")}
    return names


def check_spec(text: str) -> ModelSpec:
    """Parse a spec and check it before any work starts: the architecture is known, a weights file exists."""
    spec = ModelSpec.parse(text)
    known = known_architectures()
    if spec.arch not in known:
        raise unknown_architecture(spec.arch, known)
    weights_file(spec)
    return spec


def create_clip(spec: ModelSpec, device: str = "cpu") -> tuple[Any, Any, Any]:
    """Build (model, preprocess, tokenizer) for a spec; the model is in eval mode, fp32, on `device`."""
    import open_clip
    import torch

    register_bundled_configs()
    if spec.arch not in open_clip.list_models():
        raise unknown_architecture(spec.arch, open_clip.list_models())
    path = weights_file(spec)
    pretrained = str(path) if path is not None else spec.weights
    hub: AbstractContextManager[None] = quiet_random_init() if pretrained is None else nullcontext()
    if path is None and spec.weights:
        hub = weights_from_hub(str(spec), spec.arch, spec.weights)  # fails at once offline, never retries
    try:
        with hub, torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)  # random init must be reproducible: its fingerprint names the seed
            model, _, preprocess = open_clip.create_model_and_transforms(
                spec.arch, pretrained=pretrained, device=device
            )
    except RuntimeError as exc:
        if path is None and spec.weights and ("download" in str(exc).lower() or "connection" in str(exc).lower()):
            raise ModelUnavailableError(unavailable_message(str(spec), spec.arch)) from exc
        raise ModelError(f"Could not build {spec}: {exc}") from exc
    except SketchTextError:
        raise
    except Exception as exc:  # open_clip raises many types for bad tags and files
        raise ModelError(
            f"Could not build {spec}: {exc}. Check the pretrained tag (open_clip.list_pretrained()) or the file."
        ) from exc
    if pretrained is None:
        log.info("%s has seeded random weights (no tag or file in the spec): fine for tests, useless for search", spec)
    model.eval()
    tokenizer = open_clip.get_tokenizer(spec.arch)
    return model, preprocess, tokenizer


class RandomInitNotice(logging.Filter):
    """Drops open_clip's root-logger warning about random weights, which a spec without weights asks for."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No pretrained weights loaded")


@contextmanager
def quiet_random_init() -> Iterator[None]:
    """Around an open_clip build meant to start from random weights: its warning would only alarm the user."""
    notice = RandomInitNotice()
    logging.getLogger().addFilter(notice)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(notice)
