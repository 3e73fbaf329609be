"""The CLIP model: spec parsing, loading (pretrained tag or local checkpoint), batched image and text encoding.

torch and open_clip are imported inside functions so that importing the library stays light.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from sketchtext.plugin.errors import ConfigError, ModelError, ModelUnavailableError

if TYPE_CHECKING:
    import torch
    from PIL import Image

    Pixels = torch.Tensor | list[torch.Tensor]  # what `ClipEncoder.image_pixels` gives, for `encode_image_tensors`

log = logging.getLogger(__name__)

RANDOM_INIT_SEED = 0
CHECKPOINT_SUFFIXES = (".bin", ".pt", ".pth", ".safetensors")


@dataclass(frozen=True)
class ModelSpec:
    """`open_clip:ARCH[@TAG_OR_PATH]`: an open_clip architecture with a pretrained tag, a local file, or nothing
    (seeded random weights, for tests and the generated miniature)."""

    arch: str
    weights: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        backend, sep, rest = text.partition(":")
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


def weights_fingerprint(spec: ModelSpec) -> str:
    """What identifies the weights: a tag, a file's content hash, or the random-init seed."""
    path = spec.weights_path
    if path is not None:
        return f"{spec.arch}@sha256:{file_digest(path)[:16]}"
    if spec.weights:
        return f"{spec.arch}@{spec.weights}"
    return f"{spec.arch}@random-seed{RANDOM_INIT_SEED}"


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("Device 'cuda' was asked for but no CUDA GPU is visible; use --device cpu or auto.")
    return device


DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
# When precision is "auto", a faster precision is used only if its embeddings agree with fp32 this well.
AUTO_MIN_COSINE = 0.999
AUTO_MIN_TOP10_OVERLAP = 0.95


def check_precision(precision: str, device: str) -> None:
    if precision == "fp16" and device == "cpu":
        raise ConfigError("fp16 is not supported on the CPU; use precision bf16 or fp32.")


def fast_precision(device: str) -> str | None:
    """The faster precision worth trying on this device: fp16 on CUDA, bf16 on CPUs with native bf16 support."""
    import torch

    if device == "cuda":
        return "fp16"
    return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None


def precision_agreement(model: Any, preprocess: Any, precision: str, device: str) -> tuple[float, float]:
    """(lowest cosine, mean top-10 neighbour overlap) between fp32 and `precision` embeddings of a check set of
    generated product photos."""
    import copy

    import torch

    from sketchtext.plugin.miniature import MiniatureCfg, build_world, render_photo

    world = build_world(MiniatureCfg(shapes_per_category=8, colourways_per_shape=1))
    photos = [render_photo(p.shape, p.colourway, p.scene, size=224, seed=i) for i, p in enumerate(world.products[:32])]
    pixels = torch.stack([preprocess(photo) for photo in photos]).to(device)
    dtype = getattr(torch, DTYPES[precision])
    fast = copy.deepcopy(model).to(dtype)
    with torch.inference_mode():
        reference = torch.nn.functional.normalize(model.encode_image(pixels).float(), dim=-1)
        candidate = torch.nn.functional.normalize(fast.encode_image(pixels.to(dtype)).float(), dim=-1)
    cosine = float((reference * candidate).sum(-1).min())
    k = min(10, len(photos) - 1)
    ref_top = (reference @ reference.T).topk(k + 1).indices[:, 1:]
    cand_top = (candidate @ candidate.T).topk(k + 1).indices[:, 1:]
    overlap = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(ref_top, cand_top, strict=True))
    return cosine, overlap / (k * len(photos))


def choose_precision(model: Any, preprocess: Any, precision: str, device: str) -> str:
    """Resolve "auto": the fast precision if its embeddings agree with fp32 (cosine and top-10 overlap), else fp32."""
    if precision != "auto":
        check_precision(precision, device)
        return precision
    fast = fast_precision(device)
    if fast is None:
        return "fp32"
    cosine, overlap = precision_agreement(model, preprocess, fast, device)
    chosen = fast if cosine >= AUTO_MIN_COSINE and overlap >= AUTO_MIN_TOP10_OVERLAP else "fp32"
    log.info(
        "precision auto: %s agrees with fp32 at cosine %.5f, top-10 overlap %.3f -> %s", fast, cosine, overlap, chosen
    )
    return chosen


def create_clip(spec: ModelSpec, device: str = "cpu") -> tuple[Any, Any, Any]:
    """Build (model, preprocess, tokenizer) for a spec; the model is in eval mode, fp32, on `device`."""
    import open_clip
    import torch

    register_bundled_configs()
    if spec.arch not in open_clip.list_models():
        raise ConfigError(
            f"Unknown open_clip architecture {spec.arch!r}. Valid choices include: "
            f"{', '.join(m for m in open_clip.list_models() if m.startswith(('ViT-B', 'ViT-L', 'sketchtext')))} "
            "(see open_clip.list_models() for all)."
        )
    path = spec.weights_path
    if path is not None and not path.is_file():
        raise ModelUnavailableError(f"Checkpoint file {path} does not exist; check the path in the model spec.")
    pretrained = str(path) if path is not None else spec.weights
    quiet = RandomInitNotice() if pretrained is None else None
    if quiet:
        logging.getLogger().addFilter(quiet)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)  # random init must be reproducible: its fingerprint names the seed
            model, _, preprocess = open_clip.create_model_and_transforms(
                spec.arch, pretrained=pretrained, device=device
            )
    except RuntimeError as exc:
        if path is None and spec.weights and ("download" in str(exc).lower() or "connection" in str(exc).lower()):
            raise ModelUnavailableError(
                f"Could not obtain weights for {spec} (offline?). Download the checkpoint on a connected machine "
                f"(e.g. open_clip_pytorch_model.bin from the model's hub page) and point at it: "
                f"--model open_clip:{spec.arch}@/path/to/open_clip_pytorch_model.bin "
                "(or SKETCHTEXT_MODEL__SPEC)."
            ) from exc
        raise ModelError(f"Could not build {spec}: {exc}") from exc
    except Exception as exc:  # open_clip raises many types for bad tags and files
        raise ModelError(
            f"Could not build {spec}: {exc}. Check the pretrained tag (open_clip.list_pretrained()) or the file."
        ) from exc
    finally:
        if quiet:
            logging.getLogger().removeFilter(quiet)
    if pretrained is None:
        log.info("%s has seeded random weights (no tag or file in the spec): fine for tests, useless for search", spec)
    model.eval()
    tokenizer = open_clip.get_tokenizer(spec.arch)
    return model, preprocess, tokenizer


class RandomInitNotice(logging.Filter):
    """Drops open_clip's root-logger warning about random weights, which a spec without weights asks for."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No pretrained weights loaded")


class ClipEncoder:
    """A loaded CLIP model that turns images and texts into L2-normalised float32 vectors."""

    def __init__(
        self, model: Any, preprocess: Any, tokenizer: Any, *, fingerprint: str, device: str, dtype: torch.dtype
    ) -> None:
        self.model = model.to(device=device, dtype=dtype)
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.fingerprint = fingerprint
        self.device = device
        self.dtype = dtype
        self.dim = int(model.text_projection.shape[-1]) if hasattr(model, "text_projection") else 0
        if not self.dim:
            self.dim = int(self.model.visual.output_dim)
        self.pixel_steps = split_preprocess(preprocess)

    @property
    def image_size(self) -> int:
        """The side of the square the image tower reads."""
        size = getattr(self.model.visual, "image_size", 224)
        return int(max(size) if isinstance(size, tuple | list) else size)

    def preprocess_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        import torch

        return torch.stack([self.preprocess(image.convert("RGB")) for image in images])

    def image_pixels(self, images: Sequence[Image.Image]) -> Pixels:
        """The tower's input for images, for decode threads; `encode_image_tensors` finishes it where the model runs.

        No torch kernel runs here: a kernel called from another thread starts its own OpenMP team, which on a small
        CPU fights the encoder's threads (measured: 9 % off the forward pass on 2 cores). So the pixels leave as uint8
        (a quarter of float32's bytes to a GPU, pinned so the copy can overlap): each image whole when open_clip's
        resize and crop have tensor twins, which run where the model runs and there cost a fifth of PIL's bicubic
        resize; else resized and cropped here by the PIL steps, as one (N, 3, H, W) tensor. A preprocess that does not
        split at ToTensor runs whole, as floats."""
        import torch

        if self.pixel_steps is None:
            return self.preprocess_images(images)
        if self.pixel_steps.tensor is not None:
            whole = [torch.from_numpy(_rgb_array(image)).permute(2, 0, 1) for image in images]
            return [image.pin_memory() for image in whole] if self.device == "cuda" else whole
        arrays = []
        for image in images:
            for step in self.pixel_steps.pil:
                image = step(image)
            arrays.append(_rgb_array(image))
        pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
        return pixels.pin_memory() if self.device == "cuda" else pixels

    def encode_image_tensors(self, pixels: Pixels) -> NDArray[np.float32]:
        """Encode pixels from `image_pixels`, or preprocessed floats (N, 3, H, W)."""
        import torch

        with torch.inference_mode():
            if isinstance(pixels, list):
                assert self.pixel_steps is not None  # only image_pixels makes lists, and only with pixel steps
                pixels = self.pixel_steps.resize_and_crop(pixels, self.device)
            pixels = pixels.to(self.device, non_blocking=True)
            if pixels.dtype == torch.uint8 and self.pixel_steps is not None:
                pixels = self.pixel_steps.normalise(pixels)
            features = self.model.encode_image(pixels.to(self.dtype))
            return _normalised(features)

    def encode_images(self, images: Sequence[Image.Image]) -> NDArray[np.float32]:
        if not images:
            return np.zeros((0, self.dim), np.float32)
        return self.encode_image_tensors(self.preprocess_images(images))

    def encode_texts(self, texts: Sequence[str]) -> NDArray[np.float32]:
        import torch

        if not texts:
            return np.zeros((0, self.dim), np.float32)
        tokens = self.tokenizer(list(texts)).to(self.device)
        with torch.inference_mode():
            return _normalised(self.model.encode_text(tokens))


@dataclass(frozen=True)
class PixelSteps:
    """open_clip's image preprocess in two halves: the geometry (resize, crop, mode) and ToTensor + Normalize.

    `pil` are the geometric steps as given; `tensor` their torchvision v2 twins for uint8 (3, H, W) tensors, when
    every step has one (v2 resizes uint8 natively, within 2 levels of PIL's bicubic; v1 goes through float)."""

    pil: tuple[Any, ...]
    tensor: Any  # a v2.Compose, or None
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def resize_and_crop(self, images: Sequence[torch.Tensor], device: str) -> torch.Tensor:
        """Whole uint8 images of any sizes to the tower's (N, 3, H, W) uint8 input, on `device`."""
        import torch

        if device == "cpu":  # the CPU's uint8 kernels run fastest one image at a time (measured: 0.5 vs 0.8 ms)
            return torch.stack([self.tensor(image) for image in images])
        moved = [image.to(device, non_blocking=True) for image in images]
        by_size: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(moved):
            by_size.setdefault(tuple(image.shape), []).append(i)
        out: list[Any] = [None] * len(moved)
        for indices in by_size.values():  # a GPU wants few large kernels: one per photo size
            for i, image in zip(indices, self.tensor(torch.stack([moved[i] for i in indices])), strict=True):
                out[i] = image
        return torch.stack(out)

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) to what ToTensor then Normalize give, with the same float32 operations in the same
        order (bit-identical), batched."""
        import torch

        mean = torch.tensor(self.mean, dtype=torch.float32, device=pixels.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=pixels.device).view(1, -1, 1, 1)
        return pixels.to(torch.float32).div_(255).sub_(mean).div_(std)


def split_preprocess(preprocess: Any) -> PixelSteps | None:
    """Split a `Compose([...PIL steps, ToTensor, Normalize])`, the shape of every open_clip eval transform."""
    from torchvision import transforms
    from torchvision.transforms import v2

    steps = list(getattr(preprocess, "transforms", ()))
    if len(steps) < 2 or not isinstance(steps[-2], transforms.ToTensor):
        return None
    normalize = steps[-1]
    if not isinstance(normalize, transforms.Normalize) or normalize.inplace:
        return None
    pil = tuple(steps[:-2])
    if any(isinstance(step, transforms.ToTensor | transforms.Normalize | transforms.ConvertImageDtype) for step in pil):
        return None
    twins = [tensor_twin(step) for step in pil]
    tensor = None if any(twin is None for twin in twins) else v2.Compose(twins)
    return PixelSteps(pil, tensor, tuple(float(v) for v in normalize.mean), tuple(float(v) for v in normalize.std))


def tensor_twin(step: Any) -> Any:
    """The torchvision v2 transform that does to a uint8 RGB tensor what `step` does to an RGB PIL image (open_clip's
    conversion to RGB does nothing to either); None when there is none."""
    import open_clip.transform
    from torchvision import transforms
    from torchvision.transforms import v2

    if isinstance(step, transforms.Resize):
        return v2.Resize(step.size, step.interpolation, step.max_size, step.antialias)
    if isinstance(step, transforms.CenterCrop):
        return v2.CenterCrop(step.size)
    to_rgb = getattr(open_clip.transform, "MaybeConvertMode", None)
    if (to_rgb is not None and isinstance(step, to_rgb) and step.mode == "RGB") or step is getattr(
        open_clip.transform, "_convert_to_rgb", None
    ):
        return v2.Identity()
    return None


def _rgb_array(image: Image.Image) -> NDArray[np.uint8]:
    """An image's pixels as a writable (H, W, 3) uint8 array (torch.from_numpy warns on read-only ones)."""
    return np.array(image if image.mode == "RGB" else image.convert("RGB"))


def _normalised(features: torch.Tensor) -> NDArray[np.float32]:
    import torch

    features = torch.nn.functional.normalize(features.float(), dim=-1)
    return features.cpu().numpy().astype(np.float32, copy=False)


def load_encoder(
    spec: str | ModelSpec, *, device: str = "auto", precision: str = "auto", checkpoint: Path | str | None = None
) -> ClipEncoder:
    """Load a CLIP encoder for a model spec on a device at a precision ("auto" checks the fast one against fp32);
    with a trained sketchtext `checkpoint` folder, a `ComposedEncoder` (tuned image tower, composed queries,
    fingerprint bound to the checkpoint)."""
    import torch

    if checkpoint is not None:
        from sketchtext.plugin.composed import load_composed_encoder

        return load_composed_encoder(spec, checkpoint, device=device, precision=precision)
    parsed = spec if isinstance(spec, ModelSpec) else ModelSpec.parse(spec)
    resolved_device = resolve_device(device)
    if precision != "auto":
        check_precision(precision, resolved_device)  # before the (slow) model build
    model, preprocess, tokenizer = create_clip(parsed, resolved_device)
    chosen = choose_precision(model, preprocess, precision, resolved_device)
    log.info("loaded %s on %s as %s", parsed, resolved_device, chosen)
    return ClipEncoder(
        model,
        preprocess,
        tokenizer,
        fingerprint=weights_fingerprint(parsed),
        device=resolved_device,
        dtype=getattr(torch, DTYPES[chosen]),
    )
