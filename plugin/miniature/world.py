"""A seeded, fine-grained product world: the hermetic miniature of the paper's setting.

Each category is a parametric drawing family (`sketchtext.plugin.miniature.families`); a *shape* is a category
plus a parameter vector in [0, 1]^k and carries a unique product-line name ("pretzel": a real word that is one
CLIP token and has no other meaning in the captions, or a made-up word once the list runs out). Every shape
comes in several *colourways* (colour, pattern, second colour) drawn from a world palette, and every colourway
in several shapes of the same category and split, so a sketch alone cannot pick the colourway and words alone
cannot pick the shape. Splits are by shape: test shapes are never seen in training.

`sketchtext.plugin.miniature.generate` writes a world to disk; `render_photo` / `render_sketch` redraw any of its
images in memory from its seed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from sketchtext.plugin.errors import ConfigError
from sketchtext.plugin.miniature.draw import draw_photo, draw_sketch
from sketchtext.plugin.miniature.families import FAMILIES, shape_parts

logger = logging.getLogger(__name__)

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 30, 35), "orange": (240, 120, 20), "yellow": (245, 205, 40), "green": (50, 150, 60),
    "teal": (0, 130, 130), "blue": (40, 90, 200), "navy": (20, 30, 90), "purple": (120, 50, 160),
    "pink": (240, 130, 180), "brown": (120, 70, 35), "black": (25, 25, 25), "white": (240, 240, 235),
    "grey": (128, 128, 128), "beige": (215, 195, 150),
}  # fmt: skip
PATTERNS = ("plain", "stripes", "dots", "checks")
SCENES: dict[str, str] = {
    "studio": "in a studio", "beach": "on a beach", "street": "on a street",
    "snow": "in the snow", "park": "in a park", "home": "on a wooden floor",
}  # fmt: skip
SPLITS = ("train", "val", "test")
_PATTERN_ADJ = {"stripes": ("striped",), "dots": ("dotted", "spotted", "polka-dot"), "checks": ("checked", "checkered")}
_PHOTO_HEADS = ("a photo of ", "", "a picture of ", "product photo: ", "a close-up photo of ")
_SKETCH_HEADS = (
    "a sketch of",
    "a line drawing of",
    "a drawing of",
    "a pencil sketch of",
    "a black and white sketch of",
)
_WORDS = """
falcon otter badger heron lynx beaver bison camel cobra condor crane eagle gecko gopher hawk ibis koala llama magpie
moose newt osprey panda parrot pelican penguin puffin quail rabbit raven robin shark sparrow squid stork swan trout
turtle viper weasel whale wolf yak bear beetle bee cricket dolphin donkey duck goose horse lion monkey mouse owl pony
tortoise fox frog goat hippo moth octopus oyster pigeon rhino snail spider lobster crab kitten puppy hamster bunny
kangaroo giraffe elephant jaguar panther gorilla chimp sloth hedgehog squirrel raccoon skunk possum bat lizard gator
dragon unicorn phoenix griffin pretzel waffle muffin bagel biscuit cookie donut pancake noodle taco burrito nacho
garlic onion potato carrot radish celery parsley basil mango papaya melon banana grape kiwi walnut almond cashew
peanut pistachio hazelnut coconut toffee fudge cracker brioche baguette croissant pizza pasta risotto ravioli lasagna
sushi tofu bacon sausage burger sandwich omelette yogurt cheese popcorn cereal granola oatmeal porridge jelly custard
pudding sorbet gelato brownie cupcake tortilla pita kebab hummus wasabi cumin thyme rosemary fennel canyon river
valley volcano island harbor lagoon delta prairie tundra oasis summit ridge cliff cove bay reef crater comet planet
meteor galaxy nebula orbit rocket aurora breeze thunder storm cloud tornado monsoon horizon sunrise sunset eclipse
lunar solar cosmos atlas anchor arrow badge banjo barrel bridge cable camera canoe castle cello compass crown engine
feather flute fossil glove guitar hammer harp helmet ladder magnet mirror needle paddle piano pillow puzzle quill sail
scroll shield sickle spoon ticket trumpet tunnel violin wagon whistle wheel yacht zipper tractor bicycle taxi tram
ferry glider kayak sled trophy medal coin jewel radar sonar signal laser motor turbine piston gear boston denver
dallas austin berlin paris london milan rome tokyo sydney oslo vienna dublin madrid lisbon prague cairo dakar lima
quito havana miami seattle atlanta detroit memphis nashville orlando houston chicago toronto vancouver montreal geneva
zurich munich naples venice florence seville porto athens sparta troy kyoto osaka seoul delhi mumbai dubai bali fiji
hawaii alaska texas nevada utah oregon dakota montana kansas ohio boulder aspen tahoe malibu oliver jasper felix hugo
otto oscar leo max theo milo ezra finn luca marco nico dante enzo bruno carlo diego pablo rafa mateo hector victor
walter arthur edgar frank harvey lloyd morgan murphy parker porter sawyer tucker wilson archie barney buster chester
dexter duke gus harley jack kobe louie ollie rocky rufus toby winston zeus apollo hermes athena juno luna nova stella
iris daisy poppy willow fern ivy clover thistle lotus lily echo legacy zenith pixel quartz matrix vector saga quest
odyssey legend myth riddle enigma karma mojo zen tempo rhythm melody ballad opera tango samba waltz disco jazz reggae
funk
"""


@dataclass(frozen=True)
class MiniatureCfg:
    """Settings of a generated world; the same config and seed always give the same files."""

    seed: int = 0
    categories: tuple[str, ...] = ("boot", "chair", "bag", "lamp")
    shapes_per_category: int = 40
    colourways_per_shape: int = 4
    sketches_per_shape: int = 2
    image_size: int = 64
    palette_size: int = 32  # distinct colourways in the world, at most colours x patterns
    colours: tuple[str, ...] = ()  # the colour vocabulary, a subset of COLOURS; empty: all of them
    shapes_per_colourway: int = 4  # target number of shapes sharing a colourway within one category and split
    split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    captions_per_photo: int = 2
    sketch_captions: int = 1  # captions per sketch in captions.csv (kind "sketch"); 0 for none
    name_in_caption: float = 0.8  # share of captions that name the shape's product line
    sketch_drop: float = 0.12  # chance that one outline stroke is left out of a sketch
    jpeg_quality: int = 90
    workers: int = 1  # processes used to render; output is identical for any value


@dataclass(frozen=True)
class Colourway:
    """Appearance a sketch cannot show: main colour, pattern and the pattern's second colour."""

    colour: str
    pattern: str
    colour2: str | None = None

    @property
    def phrase(self) -> str:
        """Attribute phrase for composed queries, e.g. "in red with white stripes"."""
        if self.pattern == "plain":
            return f"in {self.colour}"
        if self.pattern == "checks":
            return f"in {self.colour} and {self.colour2} checks"
        return f"in {self.colour} with {self.colour2} {self.pattern}"

    @property
    def slug(self) -> str:
        return f"{self.colour}-{self.pattern}"


@dataclass(frozen=True)
class Shape:
    """A category plus a parameter vector; `name` is its unique product-line word."""

    index: int
    category: str
    name: str
    params: tuple[float, ...]
    split: str = "train"

    def param_dict(self) -> dict[str, float]:
        return {p.name: v for p, v in zip(FAMILIES[self.category].params, self.params, strict=True)}


@dataclass(frozen=True)
class Product:
    """One photo: a shape in one of its colourways, on a scene."""

    shape: Shape
    colourway: Colourway
    scene: str
    slot: int

    @property
    def photo(self) -> str:
        return f"catalog/{self.shape.category}/{self.shape.name}-{self.colourway.slug}.jpg"

    @property
    def sku(self) -> str:
        return f"{self.shape.category[:3].upper()}-{self.shape.index:05d}-{self.slot}"

    @property
    def title(self) -> str:
        return f"{self.shape.name.capitalize()} {self.shape.category}, {self.colourway.phrase[3:]}"


@dataclass(frozen=True)
class World:
    """Everything about a generated world except its pixels."""

    cfg: MiniatureCfg
    shapes: tuple[Shape, ...]
    products: tuple[Product, ...]

    def sketch_paths(self, shape: Shape) -> list[str]:
        return [f"sketches/{shape.category}/{shape.name}-{k}.png" for k in range(self.cfg.sketches_per_shape)]


def check_cfg(cfg: MiniatureCfg) -> None:
    """Raise ConfigError for a config that cannot make a world."""
    unknown = [c for c in cfg.categories if c not in FAMILIES]
    if unknown or not cfg.categories or len(set(cfg.categories)) != len(cfg.categories):
        raise ConfigError(f"Unknown or repeated categories {list(cfg.categories)}; choose from {sorted(FAMILIES)}.")
    if cfg.shapes_per_category < 3:
        raise ConfigError("shapes_per_category must be at least 3 so that every split gets a shape.")
    colours = cfg.colours or tuple(COLOURS)
    if set(colours) - set(COLOURS) or len(set(colours)) != len(colours) or len(colours) < 2:
        raise ConfigError(f"colours must be two or more distinct names from {list(COLOURS)}, got {list(colours)}.")
    if not 1 <= cfg.colourways_per_shape <= cfg.palette_size <= len(colours) * len(PATTERNS):
        raise ConfigError(
            f"Need 1 <= colourways_per_shape <= palette_size <= {len(colours) * len(PATTERNS)}; "
            f"got {cfg.colourways_per_shape} and {cfg.palette_size}."
        )
    if cfg.sketches_per_shape < 1 or cfg.image_size < 16 or cfg.shapes_per_colourway < 1:
        raise ConfigError("sketches_per_shape and shapes_per_colourway must be >= 1 and image_size >= 16.")
    if len(cfg.split_fractions) != 3 or min(cfg.split_fractions) < 0 or abs(sum(cfg.split_fractions) - 1) > 1e-6:
        raise ConfigError(f"split_fractions must be three non-negative shares summing to 1, got {cfg.split_fractions}.")


def _reserved() -> set[str]:
    """Words with a meaning in captions, which a product-line name must not be."""
    phrases = [w for f in FAMILIES.values() for p in f.params for w in (p.low, p.high) if w]
    phrases += [*FAMILIES, *COLOURS, *PATTERNS, *SCENES, *SCENES.values(), *_PHOTO_HEADS, *_SKETCH_HEADS]
    phrases += [w for ws in _PATTERN_ADJ.values() for w in ws]
    return {t for ph in phrases for t in ph.replace("-", " ").replace(":", " ").split()}


def product_names(count: int, seed: int) -> list[str]:
    """`count` unique product-line names: real words first (one CLIP token each), then made-up words ("vokari")."""
    words = [w for w in dict.fromkeys(_WORDS.split()) if w not in _reserved()]
    rng = np.random.default_rng([seed, 0, 7])
    names = [words[i] for i in rng.permutation(len(words))][:count]
    taken = set(words)
    while len(names) < count:
        word = "".join(str(rng.choice(list("bdfgklmnprstvz"))) + str(rng.choice(list("aeiou"))) for _ in range(3))
        if word not in taken:
            taken.add(word)
            names.append(word)
    return names


def _sample_params(n: int, category: str, rng: np.random.Generator) -> list[tuple[float, ...]]:
    """n well-spread parameter vectors (best of 10 candidates each), discrete parameters on their levels."""
    specs = FAMILIES[category].params
    levels = np.array([max(p.levels, 0) for p in specs])
    out: list[np.ndarray] = []
    for _ in range(n):
        cand = rng.random((10, len(specs)))
        disc = levels > 0
        cand[:, disc] = np.round(cand[:, disc] * (levels[disc] - 1)) / (levels[disc] - 1)
        if out:
            dist = np.linalg.norm(cand[:, None, :] - np.array(out)[None], axis=2).min(axis=1)
            cand = cand[[int(np.argmax(dist))]]
        out.append(cand[0])
    return [tuple(round(float(v), 4) for v in row) for row in out]


def _palette(cfg: MiniatureCfg) -> list[Colourway]:
    """The world's colourways: unique (colour, pattern) pairs covering every colour and pattern early."""
    rng = np.random.default_rng([cfg.seed, 0, 100])
    vocabulary = list(cfg.colours or COLOURS)
    names = [vocabulary[i] for i in rng.permutation(len(vocabulary))]
    out = []
    for i in range(cfg.palette_size):
        colour, pattern = names[i % len(names)], PATTERNS[(i // len(names) + i) % len(PATTERNS)]
        if pattern == "plain":
            out.append(Colourway(colour, pattern))
            continue
        rgb = np.array(COLOURS[colour])
        contrast = [c for c in names if np.linalg.norm(np.array(COLOURS[c]) - rgb) > 150]
        out.append(Colourway(colour, pattern, contrast[int(rng.integers(len(contrast)))]))
    return out


def _deal(n: int, per_shape: int, palette: int, per_colourway: int, rng: np.random.Generator) -> list[list[int]]:
    """Colourway indices for n shapes, each colourway of a random sub-palette used about equally often."""
    m = int(np.clip(n * per_shape // per_colourway, per_shape, palette))
    sub = rng.permutation(palette)[:m]
    counts = np.zeros(m)
    out = []
    for _ in range(n):
        pick = np.argsort(counts + rng.random(m) * 0.5, kind="stable")[:per_shape]
        counts[pick] += 1
        out.append(sorted(int(sub[i]) for i in pick))
    return out


def build_world(cfg: MiniatureCfg | None = None) -> World:
    """Shapes, splits, colourways and scenes of a world, without rendering anything.

    Args:
        cfg: the world's settings; defaults to `MiniatureCfg()`.

    Returns:
        The world's shapes (with their split) and products (one per shape and colourway).

    Raises:
        ConfigError: the config cannot make a world.
    """
    cfg = cfg or MiniatureCfg()
    check_cfg(cfg)
    palette = _palette(cfg)
    if len({c.slug + str(c.colour2) for c in palette}) != len(palette):
        raise ConfigError(f"{len(cfg.colours)} colours repeat colourways in a palette of {cfg.palette_size}; add some.")
    names = iter(product_names(len(cfg.categories) * cfg.shapes_per_category, cfg.seed))
    shapes: list[Shape] = []
    products: list[Product] = []
    for ci, category in enumerate(cfg.categories):
        rng = np.random.default_rng([cfg.seed, 0, ci])
        n = cfg.shapes_per_category
        n_test = max(1, round(n * cfg.split_fractions[2]))
        n_val = max(1, round(n * cfg.split_fractions[1])) if cfg.split_fractions[1] > 0 else 0
        splits = ["train"] * (n - n_test - n_val) + ["val"] * n_val + ["test"] * n_test
        splits = [splits[i] for i in rng.permutation(n)]
        params = _sample_params(n, category, rng)
        mine = [Shape(len(shapes) + i, category, next(names), params[i], splits[i]) for i in range(n)]
        shapes += mine
        for split in SPLITS:
            group = [s for s in mine if s.split == split]
            dealt = _deal(len(group), cfg.colourways_per_shape, cfg.palette_size, cfg.shapes_per_colourway, rng)
            for shape, cws in zip(group, dealt, strict=True):
                for slot, k in enumerate(cws):
                    products.append(Product(shape, palette[k], str(rng.choice(list(SCENES))), slot))
    products.sort(key=lambda p: (p.shape.index, p.slot))
    return World(cfg, tuple(shapes), tuple(products))


def _descriptors(shape: Shape) -> list[tuple[float, str]]:
    """(extremeness, phrase) for every parameter far enough from the middle to be worth a word."""
    out = []
    for spec, v in zip(FAMILIES[shape.category].params, shape.params, strict=True):
        if spec.levels:
            word = spec.low if v == 0 else spec.high if v == 1 else None
        else:
            word = spec.low if v < 0.25 else spec.high if v > 0.75 else None
        if word:
            out.append((0.3 if spec.levels else abs(v - 0.5), word))  # rank a clear endpoint mid-way
    return out


def _noun_phrase(shape: Shape, phrases: Sequence[str], colour: str | None, named: bool) -> str:
    """e.g. "the tall red striped pretzel boot with a pointed toe" (article included)."""
    pre = [p for p in phrases if not p.startswith("with")]
    post = [p for p in phrases if p.startswith("with")]
    words = [*pre, *([colour] if colour else []), *([shape.name] if named else []), shape.category]
    text = " ".join(words)
    article = "the" if named else ("an" if text[0] in "aeiou" else "a")
    withs = [q.removeprefix("with ") for q in post if q.startswith("with ")]
    tail = " and ".join([f"with {' and '.join(withs)}"] * bool(withs) + [q for q in post if q.startswith("without")])
    return f"{article} {text} {tail}".strip()


def describe(shape: Shape, k: int = 2) -> str:
    """Deterministic shape description from its most extreme parameters, e.g. "a tall chunky boot"."""
    phrases = [p for _, p in sorted(_descriptors(shape), key=lambda t: -t[0])[:k]]
    return _noun_phrase(shape, phrases, None, False)


def _pick_phrases(shape: Shape, rng: np.random.Generator) -> list[str]:
    options = [p for _, p in _descriptors(shape)]
    k = min(len(options), int(rng.choice([0, 1, 2], p=[0.3, 0.45, 0.25])))
    return [options[i] for i in sorted(rng.choice(len(options), k, replace=False))] if k else []


def photo_caption(product: Product, rng: np.random.Generator, name_p: float = 0.8) -> str:
    """One pretraining caption of a photo, e.g. "a photo of the pretzel boot in red with white stripes"."""
    cw, named = product.colourway, bool(rng.random() < name_p)
    phrases = _pick_phrases(product.shape, rng)
    colour = None
    if rng.random() < 0.5:
        colour = cw.colour
        if cw.pattern != "plain":
            adj = str(rng.choice(_PATTERN_ADJ[cw.pattern]))
            colour = f"{cw.colour} and {cw.colour2} {adj}" if rng.random() < 0.5 else f"{cw.colour} {adj}"
    parts = [str(rng.choice(_PHOTO_HEADS)) + _noun_phrase(product.shape, phrases, colour, named)]
    if colour is None:
        parts.append(cw.phrase)
    if rng.random() < 0.4:
        parts.append(SCENES[product.scene])
    return " ".join(parts)


def sketch_caption(shape: Shape, rng: np.random.Generator, name_p: float = 0.8) -> str:
    """One caption of a sketch, e.g. "a line drawing of the pretzel boot with a pointed toe"."""
    named = bool(rng.random() < name_p)
    return f"{rng.choice(_SKETCH_HEADS)} {_noun_phrase(shape, _pick_phrases(shape, rng), None, named)}"


def category_sketch_captions(category: str) -> list[str]:
    """Category-level captions of a drawing, e.g. "a line drawing of a boot": all a web-scale CLIP has seen."""
    article = "an" if category[0] in "aeiou" else "a"
    return [f"{head} {article} {category}" for head in _SKETCH_HEADS]


def render_photo(
    shape: Shape, colourway: Colourway, scene: str = "studio", *, size: int = 64, seed: int | Sequence[int] = 0
) -> Image.Image:
    """Render the photo of a shape in a colourway on a scene.

    Args:
        shape: what to draw.
        colourway: colour, pattern and second colour.
        scene: one of `SCENES`.
        size: width and height in pixels.
        seed: seeds placement, lighting, pattern phase and background; `generate_world` uses
            `(cfg.seed, 1, shape.index, product.slot)`.

    Returns:
        An RGB image.
    """
    rgb2 = COLOURS[colourway.colour2] if colourway.colour2 else None
    rng = np.random.default_rng(seed)
    parts = shape_parts(shape.category, shape.params)
    return draw_photo(parts, COLOURS[colourway.colour], rgb2, colourway.pattern, scene, size, rng)


def render_sketch(shape: Shape, *, size: int = 64, seed: int | Sequence[int] = 0, drop: float = 0.12) -> Image.Image:
    """Render a human-like sketch of a shape.

    Args:
        shape: what to draw.
        size: width and height in pixels.
        seed: seeds the deformation, jitter and dropped strokes; `generate_world` uses
            `(cfg.seed, 2, shape.index, k)` for the k-th sketch.
        drop: chance that one outline stroke is left out.

    Returns:
        A mode "L" image, black lines on white.
    """
    return draw_sketch(shape_parts(shape.category, shape.params), size, np.random.default_rng(seed), drop)
