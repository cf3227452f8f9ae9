"""Drawing of the synthetic corpus's faces: :func:`draw_face`.

A face is drawn with anti-aliased OpenCV primitives at sub-pixel precision on a head that
turns like a vertical cylinder (:class:`_Head`), from a class's expression and a subject's
appearance (:mod:`.appearance`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .appearance import EXPRESSIONS, ExpressionParams, Identity, _mix, _shade

# Sub-pixel precision of all drawing calls (coordinates are multiplied by 2**_SHIFT).
_SHIFT = 4
_SCALE = 1 << _SHIFT


# --------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------


def _p(x: float, y: float) -> tuple[int, int]:
    """A point in fixed-point coordinates for cv2 calls made with shift=_SHIFT."""
    return (int(round(x * _SCALE)), int(round(y * _SCALE)))


def _ax(a: float, b: float) -> tuple[int, int]:
    """Ellipse semi-axes in fixed-point coordinates (at least one unit)."""
    return (max(1, int(round(a * _SCALE))), max(1, int(round(b * _SCALE))))


def _ellipse(
    img: np.ndarray,
    c: tuple[float, float],
    axes: tuple[float, float],
    colour,
    thickness: int = -1,
    start: float = 0.0,
    end: float = 360.0,
    angle: float = 0.0,
) -> None:
    """Anti-aliased (filled by default) ellipse or arc with sub-pixel centre and axes."""
    cv2.ellipse(img, _p(*c), _ax(*axes), angle, start, end, colour, thickness, cv2.LINE_AA, _SHIFT)


def _polyline(img: np.ndarray, pts: np.ndarray, colour, thickness: int, closed: bool = False) -> None:
    """Anti-aliased polyline through float points (N, 2)."""
    fixed = np.round(np.asarray(pts) * _SCALE).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(img, [fixed], closed, colour, max(1, int(round(thickness))), cv2.LINE_AA, _SHIFT)


def _fill(img: np.ndarray, pts: np.ndarray, colour) -> None:
    """Anti-aliased filled polygon through float points (N, 2)."""
    fixed = np.round(np.asarray(pts) * _SCALE).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(img, [fixed], colour, cv2.LINE_AA, _SHIFT)


@dataclass(frozen=True)
class _Head:
    """Projection of face coordinates onto the image for a head turned by `yaw`.

    The face is modelled as a vertical cylinder: a point at horizontal face coordinate u
    (-1..1, fraction of the half-width) sits at angle asin(u) and is seen at
    sin(asin(u) + theta); its horizontal extent is foreshortened by cos(asin(u) + theta).
    """

    cx: float
    cy: float
    a: float  # image half-width of the face ellipse
    b: float  # half-height
    theta: float  # turn angle in radians

    def x(self, u: float) -> float:
        """Image x of face coordinate u."""
        return self.cx + self.a * math.sin(math.asin(max(-1.0, min(1.0, u))) + self.theta)

    def fore(self, u: float) -> float:
        """Horizontal foreshortening (0..1) at face coordinate u; 0 = hidden at the silhouette."""
        return max(0.0, math.cos(math.asin(max(-1.0, min(1.0, u))) + self.theta))

    def y(self, v: float) -> float:
        """Image y of vertical face coordinate v (-1 top .. 1 chin)."""
        return self.cy + self.b * v


def draw_face(
    canvas: np.ndarray,
    box_center: tuple[float, float],
    face_height: float,
    identity: Identity,
    expression: str,
    intensity: float,
    yaw: float = 0.0,
    talk: float = 0.0,
    blink: bool = False,
) -> tuple[int, int, int, int]:
    """Draw a head (hair, neck, shoulders, face) on BGR `canvas` in place; return the face box.

    `box_center` is the centre of the face ellipse and `face_height` its full height (chin to
    the top of the forehead). `expression` names an entry of :data:`EXPRESSIONS`, drawn at
    `intensity` (0 neutral .. 1 apex) on top of the subject's resting face. `yaw` in -1..1
    turns the head (1 = about 60 degrees), `talk` in 0..1 opens the mouth as in speech and
    `blink` closes the eyes. Returns the face ellipse's bounding box (x, y, w, h) in pixels,
    rounded to ints; it may extend beyond the canvas.
    """
    params = EXPRESSIONS[expression].scaled(float(np.clip(intensity, 0.0, 1.0))).plus(identity.rest)
    b = face_height / 2.0
    # A turned head shows a narrower face outline (the cylinder's cross-section is elliptical).
    a = b * identity.aspect * (1.0 - 0.18 * min(1.0, abs(yaw)))
    head = _Head(float(box_center[0]), float(box_center[1]), a, b, theta=float(np.clip(yaw, -1, 1)) * math.radians(60))
    skin = identity.skin_bgr

    _draw_body(canvas, head, identity)
    _draw_hair_back(canvas, head, identity)
    _draw_ears(canvas, head, skin)
    _draw_skin(canvas, head, skin)
    _draw_hair_front(canvas, head, identity)
    _draw_eyes(canvas, head, identity, params, blink)
    _draw_brows(canvas, head, identity, params)
    _draw_nose(canvas, head, skin, params)
    _draw_cheeks(canvas, head, skin, params)
    _draw_mouth(canvas, head, identity, params, talk)
    if identity.glasses:
        _draw_glasses(canvas, head, identity)
    x0, y0 = head.cx - a, head.cy - b
    return (int(round(x0)), int(round(y0)), int(round(2 * a)), int(round(2 * b)))


def _draw_body(img: np.ndarray, h: _Head, ident: Identity) -> None:
    """Shoulders (shirt) and neck, drawn first so the head covers them."""
    shirt_c = (h.cx + 0.25 * h.a * math.sin(h.theta), h.y(2.05))
    _ellipse(img, shirt_c, (2.3 * h.a, 0.85 * h.b), ident.shirt_bgr)
    neck = np.array(
        [
            [h.cx - 0.5 * h.a, h.y(0.5)],
            [h.cx + 0.5 * h.a, h.y(0.5)],
            [h.cx + 0.55 * h.a, h.y(1.3)],
            [h.cx - 0.55 * h.a, h.y(1.3)],
        ]
    )
    _fill(img, neck, _shade(ident.skin_bgr, 0.72))


def _draw_hair_back(img: np.ndarray, h: _Head, ident: Identity) -> None:
    """Hair behind the head: a cap above the forehead, long hair down to the shoulders."""
    if ident.hair_style == "bald":
        return
    if ident.hair_style == "long":
        _ellipse(img, (h.cx, h.y(0.05)), (1.22 * h.a, 1.12 * h.b), ident.hair_bgr)
        side = np.array(
            [
                [h.cx - 1.2 * h.a, h.y(0.0)],
                [h.cx + 1.2 * h.a, h.y(0.0)],
                [h.cx + 1.1 * h.a, h.y(1.35)],
                [h.cx - 1.1 * h.a, h.y(1.35)],
            ]
        )
        _fill(img, side, ident.hair_bgr)
    else:
        _ellipse(img, (h.cx, h.y(-0.1)), (1.07 * h.a, 0.98 * h.b), ident.hair_bgr)


def _draw_ears(img: np.ndarray, h: _Head, skin: tuple[int, int, int]) -> None:
    """Ears at the sides; a turned head shows only the near ear."""
    for side in (-1.0, 1.0):
        if side * h.theta < -0.3:  # far ear hidden behind the turned head
            continue
        ex = h.cx + side * h.a * (0.97 - 0.1 * abs(h.theta))
        _ellipse(img, (ex, h.y(-0.02)), (0.14 * h.a, 0.2 * h.b), _shade(skin, 0.85))


def _draw_skin(img: np.ndarray, h: _Head, skin: tuple[int, int, int]) -> None:
    """Face ellipse with soft shading: darker rim, lighter centre shifted with the turn."""
    _ellipse(img, (h.cx, h.cy), (h.a, h.b), _shade(skin, 0.8))
    shift = 0.2 * h.a * math.sin(h.theta)
    _ellipse(img, (h.cx + shift, h.y(-0.04)), (0.88 * h.a, 0.93 * h.b), _shade(skin, 0.92))
    _ellipse(img, (h.cx + shift, h.y(-0.1)), (0.7 * h.a, 0.78 * h.b), skin)
    # Shadow under the jaw line onto the chin's lower rim.
    _ellipse(img, (h.cx, h.y(0.93)), (0.45 * h.a, 0.07 * h.b), _shade(skin, 0.85))


def _draw_hair_front(img: np.ndarray, h: _Head, ident: Identity) -> None:
    """Hairline over the top of the forehead (a fringe hangs lower)."""
    if ident.hair_style == "bald":
        return
    low = -0.55 if ident.hair_style == "fringe" else -0.68  # hairline, face coordinate v
    centre_v = (low - 1.06) / 2  # midway between the hairline and just above the crown
    # Upper half-ellipse reaching down to the hairline, plus a flat cap that rounds the crown.
    _ellipse(
        img,
        (h.cx + 0.1 * h.a * math.sin(h.theta), h.y(centre_v + 0.02)),
        (1.0 * h.a, (low + 1.06) / 2 * h.b + 0.12 * h.b),
        ident.hair_bgr,
        start=180,
        end=360,
    )
    _ellipse(img, (h.cx, h.y(centre_v)), (1.02 * h.a, 0.2 * h.b), ident.hair_bgr)


def _eye_open_factor(p: ExpressionParams) -> float:
    """Eye opening relative to neutral; raised cheeks push the lower lid up."""
    return max(0.1, 1.0 + p.eye_open - 0.3 * p.cheek_raise)


def _draw_eyes(img: np.ndarray, h: _Head, ident: Identity, p: ExpressionParams, blink: bool) -> None:
    """Dark eye sockets, sclera, iris, pupil and upper lid; a blink leaves only the lid line."""
    openness = _eye_open_factor(p)
    ey = h.y(-0.14)
    dark = (25, 25, 30)
    for side in (-1.0, 1.0):
        u = side * ident.eye_spacing
        fs = h.fore(u)
        if fs < 0.2:
            continue
        ex = h.x(u)
        rw = 0.2 * h.a * fs  # eye half-width in the image
        sock_h = 0.12 * h.b * (0.75 + 0.25 * min(openness, 1.6))
        _ellipse(img, (ex, ey - 0.015 * h.b), (1.3 * rw, sock_h), _shade(ident.skin_bgr, 0.62))
        eh = 0.055 * h.b * openness  # visible sclera half-height
        if blink:
            _ellipse(
                img, (ex, ey + 0.01 * h.b), (rw, 0.02 * h.b), dark, thickness=max(1, int(h.b * 0.025)), start=0, end=180
            )
            continue
        _ellipse(img, (ex, ey), (rw, eh), (225, 228, 232))
        ir = 0.055 * h.b
        iris_x = ex + 0.25 * rw * math.sin(h.theta)  # gaze stays on the camera side
        _ellipse(img, (iris_x, ey), (ir * fs, min(ir, eh * 1.05)), ident.iris_bgr)
        _ellipse(img, (iris_x, ey), (0.5 * ir * fs, min(0.5 * ir, eh * 0.8)), (10, 10, 10))
        lid = max(1, int(round(h.b * 0.03)))
        _ellipse(img, (ex, ey), (rw * 1.05, eh * 1.05), dark, thickness=lid, start=180, end=360)


def _draw_brows(img: np.ndarray, h: _Head, ident: Identity, p: ExpressionParams) -> None:
    """Brows as thick three-point lines; inner/outer ends move with the expression."""
    base_v = -0.36
    colour = _shade(ident.hair_bgr, 0.8) if ident.hair_style != "bald" else (40, 45, 55)
    thick = max(2, int(round(h.b * 0.06)))
    for side in (-1.0, 1.0):
        u_in = side * max(0.06, ident.eye_spacing - 0.25 - p.brow_squeeze)
        u_out = side * (ident.eye_spacing + 0.26)
        u_mid = (u_in + u_out) / 2
        if min(h.fore(u_in), h.fore(u_out)) < 0.15:
            continue
        v_in = base_v - p.brow_inner
        v_out = base_v + 0.03 - p.brow_outer
        v_mid = min(v_in, v_out) - 0.045 - 0.3 * max(0.0, p.brow_inner - p.brow_outer)
        pts = np.array([[h.x(u_in), h.y(v_in)], [h.x(u_mid), h.y(v_mid)], [h.x(u_out), h.y(v_out)]])
        _polyline(img, pts, colour, thick)


def _draw_nose(img: np.ndarray, h: _Head, skin: tuple[int, int, int], p: ExpressionParams) -> None:
    """Bright bridge with a shadow line, nostrils, and wrinkles for a wrinkled nose."""
    tip_x = h.x(0.0) + 0.12 * h.a * math.sin(h.theta)  # the tip sticks out when turned
    top = np.array([[h.x(0.0), h.y(-0.12)], [tip_x, h.y(0.24)]])
    _polyline(img, top + [[0.05 * h.a, 0]], _shade(skin, 1.1), max(2, int(h.a * 0.08)))
    _polyline(img, top - [[0.05 * h.a, 0]], _shade(skin, 0.72), max(1, int(h.a * 0.03)))
    flare = 1.0 + 0.3 * p.nose_wrinkle
    ny = h.y(0.28 - 0.04 * p.nose_wrinkle - 0.04 * p.upper_lip_raise)
    for side in (-1.0, 1.0):
        nx = tip_x + side * 0.11 * h.a * flare * h.fore(side * 0.1)
        _ellipse(img, (nx, ny), (0.055 * h.a * flare, 0.03 * h.b), (40, 40, 55))
    if p.nose_wrinkle > 0.1:
        strength = min(1.0, p.nose_wrinkle)
        for k in range(3):
            wy = h.y(-0.08 + 0.05 * k)
            wx = h.x(0.0)
            half = 0.1 * h.a * (0.6 + 0.4 * strength)
            pts = np.array([[wx - half, wy + 0.01 * h.b], [wx, wy - 0.012 * h.b], [wx + half, wy + 0.01 * h.b]])
            _polyline(img, pts, _shade(skin, 1.0 - 0.35 * strength), max(1, int(h.b * 0.018)))


def _draw_cheeks(img: np.ndarray, h: _Head, skin: tuple[int, int, int], p: ExpressionParams) -> None:
    """Raised cheeks (rounder, rosier) and nasolabial folds that deepen with smile and sneer."""
    lift = max(p.cheek_raise, 0.0)
    for side in (-1.0, 1.0):
        u = side * 0.5
        if h.fore(u) < 0.2:
            continue
        if lift > 0.05:
            _ellipse(
                img,
                (h.x(u), h.y(0.16 - 0.06 * lift)),
                (0.2 * h.a * h.fore(u), 0.12 * h.b),
                _mix(skin, (90, 90, 220), 0.25 * lift),
            )
        fold = max(lift, p.upper_lip_raise * (1.0 + side * p.mouth_asym) * 0.7)
        if fold > 0.1:
            pts = np.array([[h.x(side * 0.2), h.y(0.26)], [h.x(side * 0.36), h.y(0.4)], [h.x(side * 0.42), h.y(0.56)]])
            _polyline(img, pts, _shade(skin, 1.0 - 0.25 * min(1.0, fold)), max(1, int(h.b * 0.02)))


def _mouth_curves(
    h: _Head, ident: Identity, p: ExpressionParams, talk: float, n: int = 13
) -> tuple[np.ndarray, np.ndarray]:
    """Upper and lower lip edges of the mouth opening (each (n, 2), left to right)."""
    half = ident.mouth_width * (1.0 + p.mouth_width)
    t = np.linspace(-1.0, 1.0, n)
    u = t * half
    centre_v = 0.5
    # Corner lift: positive curve raises both corners; asymmetry raises the right corner only.
    corner = -(0.13 * p.mouth_curve) * t**2 - 0.12 * p.mouth_asym * np.clip(t, 0, None) ** 2
    gap = 0.2 * np.clip(p.mouth_open + 0.22 * talk, 0, 1.2) + 0.1 * p.upper_lip_raise
    upper_v = centre_v + corner - (0.25 * gap + 0.06 * p.upper_lip_raise * (1 + p.mouth_asym * t)) * (1 - t**2)
    lower_v = centre_v + corner + 0.75 * gap * (1 - t**2) ** 0.8
    xs = np.array([h.x(float(ui)) for ui in u])
    upper = np.stack([xs, h.cy + h.b * upper_v], axis=1)
    lower = np.stack([xs, h.cy + h.b * lower_v], axis=1)
    return upper, lower


def _draw_mouth(img: np.ndarray, h: _Head, ident: Identity, p: ExpressionParams, talk: float) -> None:
    """Mouth: dark opening with teeth when open, lips as thick lines thinned by pressing."""
    upper, lower = _mouth_curves(h, ident, p, talk)
    lip_colour = _mix(_shade(ident.skin_bgr, 0.75), (70, 60, 170), 0.45)
    opening = float(np.max(lower[:, 1] - upper[:, 1]))
    if opening > 1.5:
        _fill(img, np.concatenate([upper, lower[::-1]]), (30, 20, 45))
        if p.mouth_curve > 0.3 or p.upper_lip_raise > 0.3:  # teeth show in a smile or a sneer
            teeth_low = upper + (lower - upper) * 0.35
            _fill(img, np.concatenate([upper, teeth_low[::-1]]), (215, 220, 225))
    lip = max(1.0, h.b * 0.05 * (1.0 - 0.75 * min(1.0, max(0.0, p.lip_press))))
    _polyline(img, upper - [[0, lip * 0.4]], lip_colour, int(round(lip)))
    _polyline(img, lower + [[0, lip * 0.5]], lip_colour, int(round(lip * 1.2)))
    _polyline(img, upper, (40, 30, 60), max(1, int(h.b * 0.02)))  # the dark line between the lips


def _draw_glasses(img: np.ndarray, h: _Head, ident: Identity) -> None:
    """Thin dark frames around both eyes with a bridge."""
    ey = h.y(-0.14)
    colour = (30, 30, 35)
    thick = max(1, int(round(h.b * 0.025)))
    centres = []
    for side in (-1.0, 1.0):
        u = side * ident.eye_spacing
        if h.fore(u) < 0.2:
            continue
        c = (h.x(u), ey)
        centres.append(c)
        _ellipse(img, c, (0.27 * h.a * h.fore(u), 0.13 * h.b), colour, thickness=thick)
    if len(centres) == 2:
        left, right = sorted(centres)
        _polyline(
            img,
            np.array(
                [
                    [left[0] + 0.27 * h.a * h.fore(-ident.eye_spacing), ey - 0.03 * h.b],
                    [right[0] - 0.27 * h.a * h.fore(ident.eye_spacing), ey - 0.03 * h.b],
                ]
            ),
            colour,
            thick,
        )
