"""The loaded CLIP model: batched image and text encoding, and zero-shot query vectors.

torch and open_clip are imported inside functions so that importing the library stays light.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import NDArray

from sketchtext.plugin.errors import QueryError
from sketchtext.plugin.model.query import Combine, Mode, QueryInput, query_mode

if TYPE_CHECKING:
    import torch
    from PIL import Image

    Pixels = torch.Tensor | list[torch.Tensor]  # what `ClipEncoder.image_pixels` gives, for `encode_image_tensors`

log = logging.getLogger(__name__)


class ImageTower(Protocol):
    """An image tower outside torch (`model.int8.Int8Tower`): preprocessed float32 pixels to features, and with
    `regions` (its tokens agree with fp32) to the projected patch tokens too."""

    regions: bool

    def __call__(self, pixels: NDArray[np.float32]) -> NDArray[np.float32]: ...

    def with_tokens(self, pixels: NDArray[np.float32]) -> tuple[NDArray[np.float32], NDArray[np.float32]]: ...


class ClipEncoder:
    """A loaded CLIP model that turns images and texts into L2-normalised float32 vectors."""

    region_grid = 2  # photo regions: grid × grid cells of the image tower's last feature map
    regions_by_default = False  # zero-shot cells were never trained to match a query; a checkpoint's are (L_RT)

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
        self.image_tower: ImageTower | None = None  # int8 (model/int8.py)
        self.agreement: dict[str, dict[str, float]] = {}  # what the precision check measured, by precision

    @property
    def precision(self) -> str:
        """The image tower's precision: int8 when an int8 tower was admitted, else the torch model's dtype."""
        if self.image_tower is not None:
            return "int8"
        return {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}[str(self.dtype).removeprefix("torch.")]

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

    def tower_input(self, pixels: Pixels) -> torch.Tensor:
        """Pixels from `image_pixels` (or preprocessed floats) as the tower's input, on its device and dtype."""
        import torch

        if isinstance(pixels, list):
            assert self.pixel_steps is not None  # only image_pixels makes lists, and only with pixel steps
            pixels = self.pixel_steps.resize_and_crop(pixels, self.device)
        pixels = pixels.to(self.device, non_blocking=True)
        if pixels.dtype == torch.uint8 and self.pixel_steps is not None:
            pixels = self.pixel_steps.normalise(pixels)
        return pixels.to(self.dtype)

    def encode_image_tensors(self, pixels: Pixels) -> NDArray[np.float32]:
        """Encode pixels from `image_pixels`, or preprocessed floats (N, 3, H, W)."""
        import torch

        with torch.inference_mode():
            return _normalised(self.image_features(self.tower_input(pixels)))

    def encode_image_regions(self, pixels: Pixels) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """The global vectors (N, D) and the region vectors (N, grid², D) of the same pass: the tower's projected
        patch tokens (CNN: feature-map cells) pooled over `region_grid` × `region_grid` cells, L2-normalised; from the
        int8 tower when its tokens were admitted too, else from the torch model."""
        import torch

        from sketchtext.plugin.model.composer import image_tokens, pool_regions

        with torch.inference_mode():
            if self.image_tower is not None and self.image_tower.regions:
                features, cells = self.image_tower.with_tokens(self.tower_input(pixels).float().cpu().numpy())
                pooled, tokens = torch.from_numpy(features), torch.from_numpy(cells)
            else:
                pooled, tokens = image_tokens(self.model, self.tower_input(pixels))
            regions = pool_regions(tokens, self.region_grid)
        return _normalised(pooled), regions.float().cpu().numpy().astype(np.float32, copy=False)

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """V(pixels) for the tower's input (`tower_input`), not normalised: the int8 tower when one was admitted,
        else the torch model at its dtype."""
        import torch

        if self.image_tower is not None:
            return torch.from_numpy(self.image_tower(pixels.float().cpu().numpy()))
        return self.model.encode_image(pixels.to(self.dtype))

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

    def query_vectors(
        self, inputs: Sequence[QueryInput], combines: Sequence[Combine | None] | None = None
    ) -> tuple[NDArray[np.float32], list[Mode]]:
        """Zero-shot query vectors: sketch = image embedding, text = text embedding, both = normalised sum (the only
        way to combine them without a checkpoint). One pass per tower for the whole batch."""
        for (sketch, text), combine in zip(inputs, combines or [None] * len(inputs), strict=True):
            if sketch is not None and text and combine not in (None, "sum"):
                raise QueryError(
                    f"Combine mode {combine!r} needs a trained checkpoint (--checkpoint / "
                    "SKETCHTEXT_MODEL__CHECKPOINT); without one a sketch and text are summed (combine='sum')."
                )
        sketch_vectors = iter(self.encode_images([s for s, _ in inputs if s is not None]))
        text_vectors = iter(self.encode_texts([t for _, t in inputs if t]))
        out = np.zeros((len(inputs), self.dim), np.float32)
        for row, (sketch, text) in enumerate(inputs):
            vector = np.zeros(self.dim, np.float32)
            if sketch is not None:
                vector += next(sketch_vectors)
            if text:
                vector += next(text_vectors)
            out[row] = vector / max(float(np.linalg.norm(vector)), 1e-12)
        return out, [query_mode(*pair) for pair in inputs]


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
