"""Rendering the miniature catalogue: photos (colour, pattern, shading, scene) and human-like sketches of shapes.

Every family maps a vector of shape parameters in [0, 1] to a list of `Part`s in unit coordinates (x right,
y down, the object standing on a ground line near the bottom). Photos fill the parts with colour, pattern and
shading on a scene background; sketches trace the same parts with the abstraction of a human sketch.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFilter

from sketchtext.plugin.miniature.families import Part, Points, chain

_INK_RAMP = (128.0, 176.0)  # grey levels mapped to black and white: anti-aliased yet near-binary lines


# ---------------------------------------------------------------- rendering


def supersample(size: int) -> int:
    """Drawing resolution factor of a sketch: small images are drawn larger and reduced, for smooth lines."""
    return int(np.clip(round(384 / size), 1, 4))


@functools.lru_cache(maxsize=8)
def _grid(n: int) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """(yy, xx) pixel-centre coordinates in [0, 1) for an n x n canvas."""
    a = ((np.arange(n) + 0.5) / n).astype(np.float32)
    yy, xx = np.repeat(a[:, None], n, axis=1), np.repeat(a[None, :], n, axis=0)
    yy.flags.writeable = xx.flags.writeable = False  # shared through the cache
    return yy, xx


def _background(scene: str, n: int, rng: np.random.Generator) -> NDArray[np.float32]:
    """A scene backdrop: sky or wall above a horizon, ground below."""
    yy, xx = _grid(n)
    hz = rng.uniform(0.55, 0.72)

    def tone(c: Sequence[float], jitter: float = 12.0) -> NDArray[np.float32]:
        return (np.asarray(c, np.float32) + rng.uniform(-jitter, jitter, 3).astype(np.float32))[None, None, :]

    rows = rng.normal(0, 1, (n, 1, 1)).astype(np.float32)
    cols = rng.normal(0, 1, (1, n, 1)).astype(np.float32)
    up, y3 = (yy < hz)[..., None], yy[..., None]
    if scene == "beach":
        sky = tone((130, 185, 235)) * (0.85 + 0.2 * y3 / hz)
        sea = (y3 > hz - 0.07) & up
        img = np.where(up, np.where(sea, tone((40, 110, 170)), sky), tone((222, 196, 140)) + 6 * rows + 4 * cols)
    elif scene == "street":
        if rng.random() < 0.5:
            row = np.floor(yy / 0.05)
            mortar = ((yy / 0.05) % 1 < 0.15) | (((xx / 0.1) + 0.5 * (row % 2)) % 1 < 0.08)
            wall = np.where(mortar[..., None], tone((200, 195, 185)), tone((150, 70, 50)))
        else:
            wall = tone((175, 175, 170)) + 3 * cols
        kerb = (y3 < hz + 0.02) & ~up
        img = np.where(up, wall, np.where(kerb, tone((190, 190, 185)), tone((85, 85, 90)) + 5 * rows + 5 * cols))
    elif scene == "snow":
        img = np.where(up, tone((200, 210, 225)) * (0.95 + 0.08 * y3), tone((240, 244, 250), 6) + 2 * cols)
        k = int(0.02 * n * n / 16) + 1
        r = max(1, n // 128)
        fy, fx = rng.integers(0, n - r, k), rng.integers(0, n - r, k)
        for dy in range(r):
            for dx in range(r):
                img[fy + dy, fx + dx] = 252.0
    elif scene == "park":
        trees = (y3 > hz - 0.1 - 0.04 * np.sin(xx * 25 + rng.uniform(0, 6))[..., None]) & up
        sky = np.where(trees, tone((40, 95, 45)), tone((160, 205, 240)))
        img = np.where(up, sky, tone((80, 160, 60)) + 10 * cols + 4 * rows)
    elif scene == "home":
        plank = np.floor(yy / 0.06)[..., None]
        floor = tone((150, 100, 60)) * (0.9 + 0.1 * np.sin(plank * 7.3)) + 5 * cols
        board = (y3 < hz + 0.025) & ~up
        img = np.where(up, tone((225, 210, 180)), np.where(board, tone((245, 245, 240)), floor))
    else:  # studio
        img = np.where(up, tone((225, 223, 218)) * (1.02 - 0.08 * y3), tone((205, 203, 198)) * (1.04 - 0.1 * y3))
    return np.asarray(img, np.float32)


def _pattern(
    pattern: str, rgb: NDArray[np.float32], rgb2: NDArray[np.float32], n: int, rng: np.random.Generator
) -> NDArray[np.float32]:
    """The fabric: plain colour, or stripes / dots / checks of a second colour."""
    yy, xx = _grid(n)
    per = rng.uniform(0.06, 0.09)
    if pattern == "stripes":
        ang = math.radians(float(rng.choice([0, 45, 90, 135])))
        on = ((xx * math.cos(ang) + yy * math.sin(ang)) / per + rng.random()) % 1 < 0.5
    elif pattern == "dots":
        gx, gy = (xx / per + rng.random()) % 1 - 0.5, (yy / per + rng.random()) % 1 - 0.5
        on = gx**2 + gy**2 < 0.3**2
    elif pattern == "checks":
        per *= 1.3
        on = (np.floor(xx / per + rng.random()) + np.floor(yy / per + rng.random())) % 2 == 1
    else:
        return np.broadcast_to(rgb, (n, n, 3))
    return np.where(on[..., None], rgb2, rgb)


def _place(parts: list[Part], scale: float, dx: float, dy: float) -> list[Part]:
    """Scale about the ground centre and shift."""
    return [Part((q.points - (0.5, 0.9)) * scale + (0.5 + dx, 0.9 + dy), q.kind, q.width * scale) for q in parts]


def draw_photo(
    parts: list[Part],
    rgb: Sequence[int],
    rgb2: Sequence[int] | None,
    pattern: str,
    scene: str,
    size: int,
    rng: np.random.Generator,
) -> Image.Image:
    """A product photo: patterned, shaded object with a soft shadow on a scene background."""
    ss = int(np.clip(round(160 / size), 1, 4))
    n = size * ss
    parts = _place(parts, rng.uniform(0.86, 1.0), rng.uniform(-0.04, 0.04), rng.uniform(-0.03, 0.02))
    bg = _background(scene, n, rng)
    pts = np.vstack([q.points for q in parts])
    shadow = Image.new("L", (n, n), 0)
    x0, x1, yb = pts[:, 0].min(), pts[:, 0].max(), pts[:, 1].max()
    ImageDraw.Draw(shadow).ellipse([x0 * n, (yb - 0.03) * n, x1 * n, (yb + 0.03) * n], fill=255)
    shade_bg = np.asarray(shadow.filter(ImageFilter.GaussianBlur(n * 0.02)), np.float32)[..., None] / 255
    bg *= 1 - 0.4 * shade_bg
    label = Image.new("L", (n, n), 0)
    draw = ImageDraw.Draw(label)
    for q in parts:
        xy = [(float(x), float(y)) for x, y in q.points * n]
        if q.kind == "line":
            draw.line(xy, fill=2, width=max(1, round(q.width * n)), joint="curve")
        else:
            draw.polygon(xy, fill=1 if q.kind == "body" else 2, outline=3, width=max(1, round(n * 0.008)))
    lab = np.asarray(label)[..., None]
    col = np.asarray(rgb, np.float32)
    tex = _pattern(pattern, col, np.asarray(rgb2 if rgb2 is not None else rgb, np.float32), n, rng)
    trim = col * 0.5 if col.mean() > 60 else col + 60
    obj = np.where(lab == 1, tex, np.where(lab == 2, trim, trim * 0.6))
    mask = Image.fromarray(((lab[..., 0] > 0) * 255).astype(np.uint8))
    round_ = np.asarray(mask.filter(ImageFilter.GaussianBlur(n * 0.03)), np.float32) / 255
    yy, xx = _grid(n)
    ang = rng.uniform(-2.4, -0.7)
    cx, cy = (x0 + x1) / 2, pts[:, 1].mean()
    light = np.clip(1 + 0.6 * ((xx - cx) * math.cos(ang) + (yy - cy) * math.sin(ang)), 0.7, 1.3)
    obj = obj * ((0.6 + 0.4 * round_) * light)[..., None]
    img = np.where(lab > 0, obj, bg)
    small = np.asarray(Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).reduce(ss), np.float32)
    small += rng.normal(0, 2.5, small.shape).astype(np.float32)
    return Image.fromarray(np.clip(small, 0, 255).astype(np.uint8))


def _resample(pts: Points, step: float) -> Points:
    """Points spaced about `step` apart along a polyline."""
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.linspace(0.0, s[-1], max(2, int(s[-1] / step) + 1))
    return np.stack([np.interp(t, s, pts[:, 0]), np.interp(t, s, pts[:, 1])], axis=1)


def _stroke(st: Points, rng: np.random.Generator) -> Points:
    """A hand-drawn version of a polyline: a smooth wobble, a small offset and overshooting ends."""
    wob = np.stack(
        [np.interp(np.linspace(0, 1, len(st)), np.linspace(0, 1, 4), rng.normal(0, 0.005, 4)) for _ in "xy"], 1
    )
    st = st + wob + rng.normal(0, 0.003, 2)
    head, tail = st[0] - st[1], st[-1] - st[-2]
    head = head / (np.linalg.norm(head) + 1e-9) * rng.uniform(0, 0.02)
    tail = tail / (np.linalg.norm(tail) + 1e-9) * rng.uniform(0, 0.02)
    return chain(st[0] + head, st, st[-1] + tail)


def draw_sketch(parts: list[Part], size: int, rng: np.random.Generator, drop: float = 0.12) -> Image.Image:
    """A human-like line drawing of the parts: warped, jittered, overshooting strokes, some dropped.

    An outline is drawn in one to three strokes; at most one stroke of an outline drawn in several is dropped,
    and a small part or a detail line may be left out whole, so the object always stays recognisable.
    """
    ss = supersample(size)
    n = size * ss
    rot, shear = rng.normal(0, math.radians(3)), rng.normal(0, 0.04)
    sx, sy = rng.uniform(0.86, 1.0, 2)
    mat = np.array([[math.cos(rot), -math.sin(rot)], [math.sin(rot), math.cos(rot)]]) @ np.array([[sx, shear], [0, sy]])
    shift = rng.uniform(-0.03, 0.03, 2)
    waves = [(rng.normal(0, 1, 2) * 3, rng.uniform(0, 6.3), rng.normal(0, 1, 2)) for _ in range(2)]

    def warp(p: Points) -> Points:
        q = (p - 0.5) @ mat.T + 0.5 + shift
        for freq, phase, amp in waves:
            q = q + 0.006 * np.sin(q @ freq + phase)[:, None] * amp
        return q

    img = Image.new("L", (n, n), 255)
    draw = ImageDraw.Draw(img)
    scale = (size / 64) ** 0.5 * ss
    for q in parts:
        closed = q.kind != "line"
        pts = warp(_resample(chain(q.points, q.points[:1]) if closed else q.points, 0.008))
        small = len(pts) < 30
        if (small or not closed) and rng.random() < drop:
            continue
        strokes = [pts]
        if closed:
            draw.polygon([(float(x), float(y)) for x, y in pts * n], fill=255)
            pts = np.roll(pts[:-1], -int(rng.integers(len(pts) - 1)), axis=0)
            pts = chain(pts, pts[:1])
            n_cuts = 0 if small else int(rng.choice([0, 1, 2], p=[0.4, 0.4, 0.2]))
            cuts = sorted(int(c) for c in rng.choice(np.arange(3, len(pts) - 3), n_cuts, replace=False))
            strokes = [pts[a : b + 1] for a, b in zip([0, *cuts], [*cuts, len(pts) - 1], strict=True)]
            shortest = min(range(len(strokes)), key=lambda i: len(strokes[i]))
            if len(strokes[shortest]) < 0.35 * len(pts) and rng.random() < drop * len(strokes):
                strokes.pop(shortest)
        for st in strokes:
            width = max(1, round(rng.uniform(0.8, 1.8) * scale))
            draw.line([(float(x), float(y)) for x, y in _stroke(st, rng) * n], fill=0, width=width, joint="curve")
    arr = np.asarray(img.reduce(ss), np.float32)
    lo, hi = _INK_RAMP
    return Image.fromarray(np.clip((arr - lo) * 255 / (hi - lo), 0, 255).astype(np.uint8))
