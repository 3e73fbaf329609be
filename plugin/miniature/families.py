"""Drawing families of the miniature catalogue: parametric shape geometry (rendering is in `draw`).

Every family maps a vector of shape parameters in [0, 1] to a list of `Part`s in unit coordinates (x right,
y down, the object standing on a ground line near the bottom). Photos fill the parts with colour, pattern and
shading on a scene background; sketches trace the same parts with the abstraction of a human sketch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Points = NDArray[np.float64]
Pt = tuple[float, float]


@dataclass(frozen=True)
class Part:
    """A closed outline ("body": patterned, "trim": darker shade) or an open stroke ("line", with a width)."""

    points: Points
    kind: str = "body"
    width: float = 0.0


@dataclass(frozen=True)
class Param:
    """One shape parameter: the words for its low and high ends, and its number of levels (0 = continuous)."""

    name: str
    low: str | None
    high: str | None
    levels: int = 0


@dataclass(frozen=True)
class Family:
    """A product category drawn from a parameter vector."""

    category: str
    params: tuple[Param, ...]
    build: Callable[[dict[str, float]], list[Part]]


def _bez(p0: Pt, p1: Pt, p2: Pt, p3: Pt, n: int = 12) -> Points:
    """Cubic Bezier curve sampled at n points."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    a, b, c, d = (np.asarray(p, dtype=np.float64) for p in (p0, p1, p2, p3))
    return (1 - t) ** 3 * a + 3 * (1 - t) ** 2 * t * b + 3 * (1 - t) * t**2 * c + t**3 * d


def _arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int = 16) -> Points:
    """Elliptic arc from angle a0 to a1 in degrees (0 = right, 90 = down)."""
    a = np.radians(np.linspace(a0, a1, n))
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], axis=1)


def chain(*chunks: Points | Sequence[Pt]) -> Points:
    """Concatenate point chunks into one (N, 2) array."""
    return np.vstack([np.atleast_2d(np.asarray(c, dtype=np.float64)) for c in chunks])


def _rounded(corners: Sequence[Pt], radii: float | Sequence[float], n: int = 5) -> Points:
    """Closed polygon whose corners are replaced by quadratic curves of the given radii."""
    c = np.asarray(corners, dtype=np.float64)
    rs = [radii] * len(c) if isinstance(radii, float | int) else list(radii)
    t = np.linspace(0.0, 1.0, n)[:, None]
    out = []
    for i in range(len(c)):
        p, q, s = c[i - 1], c[i], c[(i + 1) % len(c)]
        d1, d2 = p - q, s - q
        a = q + d1 / np.linalg.norm(d1) * min(rs[i], np.linalg.norm(d1) / 2)
        b = q + d2 / np.linalg.norm(d2) * min(rs[i], np.linalg.norm(d2) / 2)
        out.append((1 - t) ** 2 * a + 2 * (1 - t) * t * q + t**2 * b)
    return np.vstack(out)


def quantise(v: float, levels: int) -> int:
    return int(round(v * (levels - 1)))


def _boot(p: dict[str, float]) -> list[Part]:
    yg, xb, pt = 0.86, 0.16, p["toe_point"]
    st, hh = 0.025 + 0.045 * p["sole"], 0.13 * p["heel"]
    xt = 0.68 + 0.22 * p["toe_len"]
    ys = yg - st
    ybh, xf = ys - hh, xb + 0.19 + 0.12 * p["width"]
    yt, ya = yg - 0.32 - 0.42 * p["shaft"], yg - 0.25 - 0.05 * p["width"]
    xball, th = xb + 0.55 * (xt - xb), 0.11 - 0.03 * pt
    a, b = (xt - 0.09, ys), (xt - 0.13, ys - th)
    c1 = (xt + 0.03 + 0.06 * pt, ys - 0.01 * pt)
    c2 = (xt + 0.03 - 0.08 * pt, ys - th * (1 - 0.3 * pt))
    back = _bez((xb, yt), (xb, ybh - 0.1), (xb - 0.025, ybh - 0.03), (xb, ybh))
    bottom = _bez((xb, ybh), (xb + 0.12, ybh), (xball - 0.12, ys), (xball, ys))
    instep = _bez(b, (xt - 0.25, ys - th - 0.015), (xf + 0.08, ya + 0.03), (xf, ya))
    toe = _bez(a, c1, c2, b, 16)
    parts = [Part(chain(back, bottom, toe, instep, [(xf + 0.015, yt)]))]
    lower = toe[toe[:, 1] > ys - 0.025]  # the sole wraps the bottom of the toe
    front = [(lower[-1, 0] + 0.008, (lower[-1, 1] + yg) / 2), (lower[-1, 0] - 0.01, yg)]
    if hh > 0.02:  # a raised heel: arch up from the ball, heel block down to the ground
        arch = _bez((xball - 0.03, yg), (xb + 0.2, yg), (xb + 0.14, ybh + st), (xb + 0.12, ybh + st), 6)
        front += [*arch, (xb + 0.11, yg)]
    parts.append(Part(chain(bottom, lower, front, [(xb + 0.01, yg)]), "trim"))
    if p["cuff"] > 0.5:
        parts.append(
            Part(
                chain([(xb - 0.005, yt), (xf + 0.02, yt), (xf + 0.018, yt + 0.05), (xb - 0.005, yt + 0.05)]),
                "trim",
            )
        )
    for t in np.linspace(0.35, 0.85, quantise(p["laces"], 5)):
        q = instep[int(t * (len(instep) - 1))]
        parts.append(Part(chain([q + (0.015, -0.015), q + (-0.035, 0.035)]), "line", 0.012))
    return parts


def _chair(p: dict[str, float]) -> list[Part]:
    yg, d, th = 0.88, 0.26, 0.045
    h, w = 0.22 + 0.14 * p["seat_h"], 0.14 + 0.08 * p["seat_w"]
    bh, tilt, s, arch = 0.2 + 0.22 * p["back_h"], 0.14 * p["tilt"], 0.06 * p["splay"], 0.07 * p["arch"]

    def pr(x: float, y: float, z: float) -> Pt:
        return (0.5 + x + 0.32 * z, yg - y - 0.2 * z)

    def leg(x: float, z: float, sx: float, sz: float) -> Part:
        return Part(chain([pr(x, h - th, z), pr(x + sx, 0.0, z + sz)]), "line", 0.022)

    xs = np.linspace(-w, w, 9)
    top = [pr(x, h + bh + arch * (1 - (x / w) ** 2), d + tilt) for x in xs]
    parts = [leg(-w + 0.015, d - 0.015, -s, s), leg(w - 0.015, d - 0.015, s, s)]
    n_slats = (0, 2, 3, 5)[quantise(p["slats"], 4)]
    if n_slats == 0:
        parts.append(Part(chain([pr(-w, h, d)], top, [pr(w, h, d)])))
    else:
        rail = [pr(x, h + bh - 0.06, d + tilt * (bh - 0.06) / bh) for x in xs]
        for x in (-w, w):
            parts.append(Part(chain([pr(x, h, d), pr(x, h + bh, d + tilt)]), "line", 0.025))
        for x in np.linspace(-w, w, n_slats + 2)[1:-1]:
            z2 = d + tilt * (bh - 0.06) / bh
            quad = [pr(x - 0.015, h, d), pr(x - 0.015, h + bh - 0.06, z2), pr(x + 0.015, h + bh - 0.06, z2)]
            parts.append(Part(chain(quad, [pr(x + 0.015, h, d)])))
        parts.append(Part(chain(top, rail[::-1])))
    parts.append(Part(chain([pr(-w, h, 0), pr(w, h, 0), pr(w, h, d), pr(-w, h, d)])))
    parts.append(Part(chain([pr(w, h, 0), pr(w, h, d), pr(w, h - th, d), pr(w, h - th, 0)]), "trim"))
    parts.append(Part(chain([pr(-w, h, 0), pr(w, h, 0), pr(w, h - th, 0), pr(-w, h - th, 0)]), "trim"))
    parts += [leg(-w + 0.015, 0.015, -s, -s), leg(w - 0.015, 0.015, s, -s)]
    if p["arms"] > 0.5:
        for x in (-w, w):
            ya = h + 0.14
            rest = chain([pr(x, ya, d + tilt * 0.14 / bh), pr(x, ya, 0.02)])
            parts += [Part(rest, "line", 0.022), Part(chain([pr(x, ya, 0.03), pr(x, h, 0.03)]), "line", 0.018)]
    return parts


def _bag(p: dict[str, float]) -> list[Part]:
    yg = 0.86
    w, hh = 0.4 + 0.28 * p["width"], 0.26 + 0.2 * p["height"]
    wt, top = w * (1 - 0.4 * p["taper"]), yg - hh
    r, handle_h = 0.015 + 0.09 * p["round"], 0.08 + 0.16 * p["handle_h"]
    kind = quantise(p["handle"], 3)
    if kind == 0:
        parts = [Part(_arc(0.5, top, wt * 0.28, handle_h, 180, 360), "line", 0.03)]
    elif kind == 1:
        frame = [(0.5 - wt * 0.32, top), (0.5 - wt * 0.2, top - handle_h), (0.5 + wt * 0.2, top - handle_h)]
        parts = [Part(chain(frame, [(0.5 + wt * 0.32, top)]), "line", 0.03)]
    else:
        parts = [Part(_arc(0.5, top, wt * 0.46, min(0.32, top - 0.06), 180, 360), "line", 0.014)]
    parts.append(
        Part(
            _rounded(
                [(0.5 - wt / 2, top), (0.5 + wt / 2, top), (0.5 + w / 2, yg), (0.5 - w / 2, yg)], [0.015, 0.015, r, r]
            )
        )
    )
    depth = (0.0, 0.35, 0.65)[quantise(p["flap"], 3)] * hh

    def half(y: float) -> float:
        return wt / 2 + (w - wt) / 2 * (y - top) / hh

    if depth > 0:
        y3 = top + 0.7 * depth
        flap = [(0.5 - wt / 2 - 0.005, top), (0.5 + wt / 2 + 0.005, top), (0.5 + half(y3) + 0.005, y3)]
        parts.append(Part(chain(flap, [(0.5, top + depth), (0.5 - half(y3) - 0.005, y3)])))
    if p["clasp"] > 0.5:
        yc = top + max(depth, 0.15 * hh)
        parts.append(
            Part(_rounded([(0.47, yc - 0.02), (0.53, yc - 0.02), (0.53, yc + 0.02), (0.47, yc + 0.02)], 0.01), "trim")
        )
    return parts


def _lamp(p: dict[str, float]) -> list[Part]:
    yg, bw = 0.9, 0.2 + 0.2 * p["base_w"]
    base_kind = quantise(p["base"], 3)
    if base_kind == 0:
        bh, parts = (
            0.045,
            [
                Part(
                    _rounded(
                        [
                            (0.5 - bw / 2, yg - 0.045),
                            (0.5 + bw / 2, yg - 0.045),
                            (0.5 + bw / 2, yg),
                            (0.5 - bw / 2, yg),
                        ],
                        0.01,
                    ),
                    "trim",
                )
            ],
        )
    elif base_kind == 1:
        bh, parts = 0.08, [Part(_arc(0.5, yg, bw / 2, 0.08, 180, 360), "trim")]
    else:
        lower = [(0.5 - bw / 2, yg - 0.03), (0.5 + bw / 2, yg - 0.03), (0.5 + bw / 2, yg), (0.5 - bw / 2, yg)]
        upper = [
            (0.5 - bw * 0.3, yg - 0.065),
            (0.5 + bw * 0.3, yg - 0.065),
            (0.5 + bw * 0.3, yg - 0.03),
            (0.5 - bw * 0.3, yg - 0.03),
        ]
        bh, parts = 0.065, [Part(chain(lower), "trim"), Part(chain(upper), "trim")]
    yb = yg - bh
    ys = yb - 0.14 - 0.2 * p["stem_h"]
    stem_kind = quantise(p["stem"], 3)
    if stem_kind < 2:
        parts.append(Part(chain([(0.5, yb), (0.5, ys)]), "line", 0.018))
        if stem_kind == 1:
            parts.append(Part(_arc(0.5, (yb + ys) / 2, 0.045, 0.045, 0, 360, 20), "trim"))
    else:
        t = np.linspace(0.0, 1.0, 14)
        half = 0.015 + 0.07 * np.sin(np.pi * t) ** 1.5
        right = np.stack([0.5 + half, yb + (ys - yb) * t], axis=1)
        parts.append(Part(chain(right, right[::-1] * (-1, 1) + (1, 0))))
    shh, sbw = 0.13 + 0.13 * p["shade_h"], 0.3 + 0.24 * p["shade_w"]
    stw, ysb = sbw * (1 - 0.65 * p["taper"]), ys + 0.01
    parts.append(Part(chain(_arc(0.5, ysb - shh, stw / 2, 0.015, 180, 360), _arc(0.5, ysb, sbw / 2, 0.025, 0, 180))))
    if p["finial"] > 0.5:
        parts.append(Part(_arc(0.5, ysb - shh - 0.03, 0.022, 0.022, 0, 360, 16), "trim"))
    return parts


def _mug(p: dict[str, float]) -> list[Part]:
    yg, cx = 0.84, 0.45
    h, w = 0.3 + 0.24 * p["height"], 0.26 + 0.18 * p["width"]
    wt = w * (1 + (p["taper"] - 0.5) * 0.5)
    fh = 0.03 if p["foot"] > 0.5 else 0.0
    yb = yg - fh
    ytop = yb - h

    def xr(y: float) -> float:
        return cx + wt / 2 + (w - wt) / 2 * (y - ytop) / h

    hs = 0.07 + 0.09 * p["handle_size"]
    y1 = ytop + 0.18 * h
    y2 = y1 + (0.4 + 0.35 * p["handle_size"]) * h
    if p["handle_shape"] > 0.5:
        handle = chain([(xr(y1) - 0.01, y1), (xr(y1) + hs, y1), (xr(y2) + hs, y2), (xr(y2) - 0.01, y2)])
    else:
        handle = _arc(xr((y1 + y2) / 2) - 0.01, (y1 + y2) / 2, hs, (y2 - y1) / 2, -90, 90)
    parts = [Part(handle, "line", 0.035)]
    body = [(cx - wt / 2, ytop), (cx + wt / 2, ytop), (cx + w / 2, yb), (cx - w / 2, yb)]
    parts.append(Part(_rounded(body, [0.005, 0.005, 0.05, 0.05])))
    if p["rim"] > 0.5:
        y3 = ytop + 0.035
        parts.append(
            Part(chain([(cx - wt / 2, ytop), (cx + wt / 2, ytop), (xr(y3), y3), (2 * cx - xr(y3), y3)]), "trim")
        )
    if fh:
        parts.append(
            Part(chain([(cx - w * 0.42, yb), (cx + w * 0.42, yb), (cx + w * 0.4, yg), (cx - w * 0.4, yg)]), "trim")
        )
    return parts


def _vase(p: dict[str, float]) -> list[Part]:
    yg, tall = 0.88, 0.46 + 0.3 * p["height"]
    rb, rm = 0.05 + 0.08 * p["base_w"], 0.1 + 0.13 * p["belly"]
    ym, nl = tall * (0.25 + 0.35 * p["shoulder"]), (0.12 + 0.22 * p["neck_len"]) * tall
    rn = min(0.028 + 0.05 * p["neck_w"], rm * 0.7)
    yn, rl = tall - nl, rn * (1.7 if p["lip"] > 0.5 else 1.05)
    low = _bez((rb, 0), (rb + 0.7 * (rm - rb), 0), (rm, ym * 0.45), (rm, ym))
    high = _bez((rm, ym), (rm, ym + 0.55 * (yn - ym)), (rn, yn - 0.35 * (yn - ym)), (rn, yn))
    prof = chain(low, high[1:], [(rn, tall - 0.03), (rl, tall)])
    right = np.stack([0.5 + prof[:, 0], yg - prof[:, 1]], axis=1)
    parts = []
    if p["handles"] > 0.5:
        y0, y1 = yg - (yn + 0.5 * nl), yg - (ym + 0.3 * (yn - ym))
        for sg in (-1, 1):
            ear = _bez(
                (0.5 + sg * rn, y0),
                (0.5 + sg * (rm + 0.07), y0),
                (0.5 + sg * (rm + 0.07), y1),
                (0.5 + sg * rm * 0.85, y1),
            )
            parts.append(Part(ear, "line", 0.022))
    parts.append(Part(chain(right, right[::-1] * (-1, 1) + (1, 0))))
    return parts


FAMILIES: dict[str, Family] = {
    f.category: f
    for f in (
        Family(
            "boot",
            (
                Param("shaft", "ankle", "tall"),
                Param("width", "slim", "chunky"),
                Param("toe_len", "with a short toe", "with a long toe"),
                Param("toe_point", "with a round toe", "with a pointed toe"),
                Param("heel", "flat", "high-heeled"),
                Param("sole", "with a thin sole", "with a thick sole"),
                Param("laces", "slip-on", "with laces", 5),
                Param("cuff", None, "with a cuff", 2),
            ),
            _boot,
        ),
        Family(
            "chair",
            (
                Param("seat_h", "low", "tall"),
                Param("seat_w", "narrow", "wide"),
                Param("back_h", "low-backed", "high-backed"),
                Param("tilt", "upright", "reclining"),
                Param("splay", "with straight legs", "with splayed legs"),
                Param("arch", "square-backed", "round-backed"),
                Param("slats", "with a solid back", "with a slatted back", 4),
                Param("arms", None, "with armrests", 2),
            ),
            _chair,
        ),
        Family(
            "bag",
            (
                Param("width", "narrow", "wide"),
                Param("height", "short", "tall"),
                Param("taper", "boxy", "tapered"),
                Param("round", "angular", "rounded"),
                Param("handle_h", "with a short handle", "with a tall handle"),
                Param("handle", "with a single handle", "with a shoulder strap", 3),
                Param("flap", "without a flap", "with a long flap", 3),
                Param("clasp", None, "with a clasp", 2),
            ),
            _bag,
        ),
        Family(
            "lamp",
            (
                Param("base_w", "with a small base", "with a wide base"),
                Param("base", "with a flat base", "with a stepped base", 3),
                Param("stem_h", "short", "tall"),
                Param("stem", "with a thin stem", "with a bulbous stem", 3),
                Param("shade_h", "with a shallow shade", "with a deep shade"),
                Param("shade_w", "with a small shade", "with a wide shade"),
                Param("taper", "with a drum shade", "with a conical shade"),
                Param("finial", None, "with a finial", 2),
            ),
            _lamp,
        ),
        Family(
            "mug",
            (
                Param("height", "short", "tall"),
                Param("width", "narrow", "wide"),
                Param("taper", "tapered", "flared"),
                Param("handle_size", "with a small handle", "with a big handle"),
                Param("handle_shape", "with a round handle", "with a square handle", 2),
                Param("rim", None, "with a rim", 2),
                Param("foot", None, "footed", 2),
            ),
            _mug,
        ),
        Family(
            "vase",
            (
                Param("height", "short", "tall"),
                Param("belly", "slender", "bulbous"),
                Param("shoulder", "bottom-heavy", "top-heavy"),
                Param("neck_len", "with a short neck", "with a long neck"),
                Param("neck_w", "with a thin neck", "with a wide neck"),
                Param("base_w", "with a narrow base", "with a wide base"),
                Param("lip", None, "with a flared lip", 2),
                Param("handles", None, "with handles", 2),
            ),
            _vase,
        ),
    )
}


def shape_parts(category: str, params: Sequence[float]) -> list[Part]:
    """The parts of one shape, framed as a product shot: standing on y = 0.9, centred, filling the frame."""
    family = FAMILIES[category]
    parts = family.build(dict(zip((q.name for q in family.params), params, strict=True)))
    pts = np.vstack([q.points for q in parts])
    x0, x1, y0, y1 = pts[:, 0].min(), pts[:, 0].max(), pts[:, 1].min(), pts[:, 1].max()
    k = min(0.84 / (x1 - x0), 0.78 / (y1 - y0))
    return [Part((q.points - ((x0 + x1) / 2, y1)) * k + (0.5, 0.9), q.kind, q.width * k) for q in parts]
