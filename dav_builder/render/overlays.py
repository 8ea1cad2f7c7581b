"""What a game draws over its 3-D view, as pure image functions: HUD kinds, a first-person
weapon (with or without depth), and fog.

A HUD is drawn on RGB only and never in depth.  A first-person weapon is drawn in a separate pass:
a game that writes it into the depth buffer too gives a correct capture (an object that moves with
the camera); one that does not gives RGB content whose depth is the scene behind it (a defect).
Fog blends RGB toward a fog colour with distance and leaves depth alone.
"""

from __future__ import annotations

import cv2
import numpy as np

HUD_KINDS = ("full", "statusbar", "crosshair", "minimap", "subtitles")
WEAPON_KINDS = ("rifle", "pistol")

_SUBTITLES = ("Where did they go?", "Follow me, stay low.", "The gate is to the north.",
              "We have to move now!", "Did you hear that?", "Check the next room.")


def draw_hud(rgb: np.ndarray, frame: int, kind: str = "full", heading: float = 0.0) -> np.ndarray:
    """A HUD of ``kind`` (:data:`HUD_KINDS`) drawn on a copy of ``rgb`` at frame ``frame``;
    ``heading`` (radians) turns a minimap's content, as a player turning does."""
    h, w = rgb.shape[:2]
    out = rgb.copy()
    s = max(1, w // 256)
    if kind == "full":
        cv2.rectangle(out, (6 * s, h - 14 * s), (6 * s + w // 4, h - 8 * s), (40, 200, 60), -1)
        cv2.rectangle(out, (6 * s, h - 14 * s), (6 * s + w // 4, h - 8 * s), (255, 255, 255), 1)
        cv2.rectangle(out, (w - w // 5 - 6 * s, 6 * s), (w - 6 * s, 6 * s + w // 5), (20, 20, 20), -1)
        cv2.circle(out, (w - w // 10 - 6 * s, 6 * s + w // 10), 2 * s, (255, 60, 60), -1)
        cv2.drawMarker(out, (w // 2, h // 2), (255, 255, 255), cv2.MARKER_CROSS, 8 * s, 1)
        cv2.putText(out, f"{100 - frame % 100:03d}", (8 * s, 16 * s), cv2.FONT_HERSHEY_SIMPLEX, 0.35 * s,
                    (255, 255, 0), 1, cv2.LINE_AA)
    elif kind == "statusbar":  # a dark strip across the top with a score and a clock
        band = out[: 12 * s].astype(np.float32)
        out[: 12 * s] = (band * 0.35).astype(np.uint8)
        cv2.putText(out, f"SCORE {1200 + 7 * frame:05d}   {frame // 30:02d}:{frame % 30 * 2:02d}", (6 * s, 9 * s),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.3 * s, (230, 230, 230), 1, cv2.LINE_AA)
        cv2.rectangle(out, (w - 50 * s, 3 * s), (w - 6 * s, 8 * s), (60, 60, 220), -1)
    elif kind == "crosshair":
        c = (w // 2, h // 2)
        for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            cv2.line(out, (c[0] + 3 * s * dx, c[1] + 3 * s * dy), (c[0] + 9 * s * dx, c[1] + 9 * s * dy), (60, 255, 60), 1)
        cv2.circle(out, c, 1, (60, 255, 60), -1)
        cv2.circle(out, c, 12 * s, (60, 255, 60), 1, cv2.LINE_AA)
    elif kind == "minimap":  # a round map whose content turns with the player
        r = w // 9
        cx, cy = w - r - 6 * s, r + 6 * s
        mask = np.zeros((h, w), np.uint8)
        cv2.circle(mask, (cx, cy), r, 255, -1)
        panel = np.full_like(out, (30, 45, 30))
        a = heading + 0.02 * frame
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        for p, q, col in (((-1, -0.2), (1, -0.2), (200, 200, 120)), ((-0.3, -1), (-0.3, 1), (200, 200, 120)),
                          ((0.2, 0.3), (0.8, 0.3), (90, 160, 230)), ((0.5, -0.9), (0.5, -0.4), (200, 90, 90))):
            p2, q2 = rot @ np.array(p) * r, rot @ np.array(q) * r
            cv2.line(panel, (int(cx + p2[0]), int(cy + p2[1])), (int(cx + q2[0]), int(cy + q2[1])), col, 2 * s)
        out[mask > 0] = panel[mask > 0]
        cv2.circle(out, (cx, cy), r, (220, 220, 220), 1, cv2.LINE_AA)
        cv2.drawMarker(out, (cx, cy), (255, 255, 255), cv2.MARKER_TRIANGLE_UP, 5 * s, 1)
    elif kind == "subtitles":  # a line of text that changes every 40 frames
        text = _SUBTITLES[(frame // 40) % len(_SUBTITLES)]
        scale = 0.35 * s
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        org = ((w - tw) // 2, h - 8 * s)
        cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 230), 1, cv2.LINE_AA)
    else:
        raise ValueError(f"unknown HUD kind {kind!r}; choose from {', '.join(HUD_KINDS)}")
    return out


def weapon_layer(height: int, width: int, kind: str, t: float, sway_px: float,
                 colour: tuple[int, int, int] = (70, 72, 78)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A first-person weapon at time ``t`` seconds: its colour (uint8 h x w x 3), where it is
    (bool h x w) and its distance from the camera in metres (float32, 0 elsewhere; 0.25 m at the
    bottom of the image to about 0.7 m at the muzzle).  It sways by up to ``sway_px`` pixels
    (at 256 pixels wide) with the walk, as a held weapon does."""
    s = width / 256.0
    dx = sway_px * s * np.sin(2 * np.pi * 0.9 * t)
    dy = sway_px * s * 0.6 * abs(np.sin(2 * np.pi * 0.9 * t))
    if kind == "rifle":
        body = [(150, 144), (172, 112), (196, 100), (216, 104), (214, 124), (232, 144)]
        barrel = [(170, 112), (150, 86), (156, 83), (180, 106)]
        sight = [(186, 100), (190, 92), (200, 92), (204, 100)]
    elif kind == "pistol":
        body = [(170, 144), (182, 118), (200, 104), (222, 108), (224, 126), (210, 144)]
        barrel = [(196, 106), (188, 96), (204, 90), (214, 102)]
        sight = [(192, 96), (194, 90), (200, 89), (202, 94)]
    else:
        raise ValueError(f"unknown weapon {kind!r}; choose from {', '.join(WEAPON_KINDS)}")
    scale_y = height / 144.0

    def poly(pts):
        return np.array([[int(round(x * s + dx)), int(round(y * scale_y + dy))] for x, y in pts], np.int32)

    mask = np.zeros((height, width), np.uint8)
    for part in (body, barrel, sight):
        cv2.fillPoly(mask, [poly(part)], 255)
    where = mask > 0
    ys = np.arange(height, dtype=np.float32)[:, None] * np.ones((1, width), np.float32)
    xs = np.ones((height, 1), np.float32) * np.arange(width, dtype=np.float32)[None, :]
    # shaded metal: lighter towards the top, a stripe of grip texture, edges drawn dark
    shade = 0.7 + 0.5 * (1 - ys / height) + 0.1 * ((xs.astype(np.int32) // max(2, int(3 * s))) % 2)
    img = np.clip(np.array(colour, np.float32)[None, None, :] * shade[..., None], 0, 255).astype(np.uint8)
    cv2.polylines(img, [poly(body), poly(barrel), poly(sight)], True, (25, 25, 28), 1, cv2.LINE_AA)
    cv2.line(img, tuple(poly([(184, 120)])[0]), tuple(poly([(206, 120)])[0]), (140, 140, 150), 1)
    metres = np.where(where, 0.25 + 0.45 * np.clip((height - ys) / (0.45 * height), 0, 1), 0.0).astype(np.float32)
    return img, where, metres


def weapon_pass(rgb: np.ndarray, depth: np.ndarray, weapon_rgb: np.ndarray, where: np.ndarray,
                weapon_depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A weapon pass that writes depth: the weapon's colour and its depth (window depth, as
    ``depth``) wherever it is drawn, over everything, as a game draws a first-person weapon (its
    own pass, the depth buffer cleared or its range squeezed before it, so that it never sinks into
    a wall).  Depth-testing it against the scene instead (``min``) while its colour is drawn over
    everything would leave the scene's depth under the weapon's colour where a wall comes nearer
    than the muzzle: RGB without its depth, a defect, in what is meant as a correct capture."""
    return np.where(where[..., None], weapon_rgb, rgb), np.where(where, weapon_depth, depth)


def gl_window_depth(metres: np.ndarray, near: float, far: float) -> np.ndarray:
    """OpenGL window depth (0 at ``near``, 1 at ``far``) of planar distances in metres."""
    z = np.maximum(np.asarray(metres, np.float64), near)
    return ((1.0 / near - 1.0 / z) / (1.0 / near - 1.0 / far)).astype(np.float32)


def apply_fog(rgb: np.ndarray, metres: np.ndarray, distance: float, colour: tuple[float, float, float]) -> np.ndarray:
    """RGB blended toward ``colour`` by ``1 - exp(-z / distance)`` of each pixel's planar
    distance ``z`` (pixels without depth, the sky, take the fog colour): haze for a large
    ``distance``, fog that swallows the ground before the far plane for a small one."""
    z = np.where(metres > 0, metres, np.inf)
    f = (1.0 - np.exp(-z / distance)).astype(np.float32)[..., None]
    out = rgb.astype(np.float32) * (1 - f) + np.array(colour, np.float32)[None, None, :] * f
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
