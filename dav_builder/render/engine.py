"""The synthetic capture engine: plan, render, write captures in the dav-capture/1 format.

Each capture is one world with an indoor and an outdoor layout far apart; shots move the camera
through them and cut, fade or show a menu in between.  The depth written is the renderer's own
OpenGL window-depth buffer (``convention: gl``, float32 ``.npy``), with the projection matrix of
each frame, ``near``/``far`` in ``capture.json`` and ``invalid: [1.0]`` for pixels where nothing
was drawn (sky).  While a menu or a black frame is on screen the depth buffer is cleared to 1.0,
as a game that draws only its UI leaves it: those frames have no valid depth.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from dav_builder.capture.depth import to_planar_metres
from dav_builder.render import overlays
from dav_builder.render.backend import Light, PybulletBackend
from dav_builder.render.families import FAMILIES, ShotStyle, style_shot
from dav_builder.render.scene import make_layout, with_open_ground, with_periodic_textures
from dav_builder.render.timeline import DEFECTS, VARIANTS, Defect, Plan, Shot, defects_json, plan_capture
from dav_builder.render.truth import depth_error, depth_error_planes, overlay_error
from dav_builder.render.trajectory import cam_to_world

OUTDOOR_OFFSET = (2000.0, 0.0, 0.0)


@dataclass
class RenderConfig:
    """What ``dav-render`` makes."""

    scenes: int = 3
    """Captures to write."""
    frames: int = 96
    """Frames per capture."""
    width: int = 256
    height: int = 144
    seed: int = 0
    fps: float = 30.0
    vfov_deg: float = 60.0
    near: float = 0.1
    far: float = 150.0
    defects: tuple[str, ...] = ()
    """Defect types that may be planted (see :data:`dav_builder.render.timeline.DEFECTS`)."""
    defect_rate: float = 0.5
    """Probability that each listed defect is planted in a capture."""
    rgb_format: str = "png"
    """``png`` or ``jpg``."""
    name_prefix: str = "capture"
    families: tuple[str, ...] = ("classic",)
    """Scene families (:data:`dav_builder.render.families.FAMILIES`); capture ``i`` is of
    ``families[i % len(families)]``."""
    variants: dict[str, tuple[str, ...]] | None = None
    """Defect type -> the variants it may take (:data:`dav_builder.render.timeline.VARIANTS`);
    with variants, some spans last only 1-4 frames.  None = every defect its first variant."""

    def __post_init__(self) -> None:
        self.defects = tuple(self.defects)
        self.families = tuple(self.families)
        for d in self.defects:
            if d not in DEFECTS:
                raise ValueError(f"unknown defect {d!r}; choose from {', '.join(DEFECTS)}")
        for f in self.families:
            if f not in FAMILIES:
                raise ValueError(f"unknown scene family {f!r}; choose from {', '.join(FAMILIES)}")
        if not self.families:
            raise ValueError("families must name at least one scene family")
        for kind, names in (self.variants or {}).items():
            bad = [n for n in names if n not in VARIANTS.get(kind, ())]
            if bad:
                raise ValueError(f"unknown variant(s) {', '.join(bad)} of {kind!r}; "
                                 f"choose from {', '.join(VARIANTS.get(kind, ())) or 'none'}")
        if self.rgb_format not in ("png", "jpg"):
            raise ValueError("rgb_format must be png or jpg")
        if self.width < 16 or self.height < 16 or self.frames < 1 or self.scenes < 1:
            raise ValueError("width and height must be at least 16, frames and scenes at least 1")


@dataclass
class _State:
    prev_depth: np.ndarray | None = None
    prev2_depth: np.ndarray | None = None
    frozen: dict[int, np.ndarray] = field(default_factory=dict)


def parse_variants(text: str) -> dict[str, tuple[str, ...]] | None:
    """``all``, or comma-separated variant names (each names its defect type); '' = None."""
    if not text:
        return None
    if text == "all":
        return dict(VARIANTS)
    owner = {v: k for k, vs in VARIANTS.items() for v in vs}
    out: dict[str, list[str]] = {}
    for name in (t.strip() for t in text.split(",") if t.strip()):
        if name not in owner:
            raise ValueError(f"unknown defect variant {name!r}; choose from {', '.join(owner)}")
        out.setdefault(owner[name], []).append(name)
    return {k: tuple(v) for k, v in out.items()}


def sky(height: int, width: int, level: float) -> np.ndarray:
    top, bottom = np.array([90, 140, 215.0]), np.array([190, 215, 240.0])
    a = np.linspace(0, 1, height)[:, None, None]
    return np.broadcast_to((top * (1 - a) + bottom * a) * level, (height, width, 3)).astype(np.uint8)


def cloudy_sky(base: np.ndarray, K: np.ndarray, cam_to_world: np.ndarray, seed: int) -> np.ndarray:
    """``base`` (the clear sky, h x w x 3) with a layer of clouds at infinity: each pixel's cover
    depends on its viewing direction only (world z up), as a game's skybox does, so the clouds
    move when the camera turns or zooms and not when it travels.  The cover is a sum of waves
    over the point where the ray would meet a plane above (its slope), thresholded into soft-edged
    clouds that fade out towards the horizon."""
    h, w = base.shape[:2]
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    rays = np.linalg.inv(K) @ np.stack([xs.ravel(), ys.ravel(), np.ones(h * w)])
    d = cam_to_world[:3, :3] @ rays
    up = d[2] / np.linalg.norm(d, axis=0)
    lift = np.maximum(d[2], 1e-3)
    u, v = d[0] / lift, d[1] / lift
    cover = np.zeros(h * w)
    for k in range(5):
        f = 1.2 * 1.7 ** k
        a = rng.uniform(0, 2 * np.pi)
        cover += np.sin(f * (np.cos(a) * u + np.sin(a) * v) + rng.uniform(0, 2 * np.pi)) / 1.6 ** k
    alpha = np.clip((cover - 0.2) * 2.5, 0.0, 0.9) * np.clip(up / 0.15, 0.0, 1.0)
    white = np.array([245.0, 245.0, 250.0])
    out = base.reshape(-1, 3).astype(np.float64) * (1 - alpha[:, None]) + white * alpha[:, None]
    return out.reshape(h, w, 3).astype(np.uint8)


def draw_hud(rgb: np.ndarray, frame: int) -> np.ndarray:
    """A game HUD: health bar, minimap, crosshair and a counter, drawn on RGB only."""
    return overlays.draw_hud(rgb, frame, "full")


def menu_screen(height: int, width: int, seed: int) -> np.ndarray:
    """A pause menu / loading screen: a dark panel with buttons and text."""
    rng = np.random.default_rng(seed)
    img = np.full((height, width, 3), rng.integers(10, 40, 3), np.uint8)
    cv2.rectangle(img, (width // 4, height // 6), (3 * width // 4, 5 * height // 6), (60, 60, 90), -1)
    for k, label in enumerate(("RESUME", "OPTIONS", "QUIT")):
        y = height // 3 + k * height // 6
        cv2.rectangle(img, (width // 3, y - 8), (2 * width // 3, y + 6), (120, 120, 170), -1)
        cv2.putText(img, label, (width // 3 + 4, y + 3), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def _light(shot: Shot, t: float) -> Light:
    level = shot.light_level * (shot.light_change if shot.light_change_at is not None and t >= shot.light_change_at else 1.0)
    return Light(shot.light_dir, (1.0, 1.0, 0.95), 0.45 * level, 0.6 * level)


def _misaligned_view(eye: np.ndarray, target: np.ndarray, params: dict) -> tuple[np.ndarray, np.ndarray]:
    f = target - eye
    right = np.cross(f / np.linalg.norm(f), [0, 0, 1.0])
    right /= np.linalg.norm(right)
    a = np.radians(params["yaw_deg"])
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    eye2 = eye + right * params["offset_m"]
    return eye2, eye2 + rot @ f


def _other_view(kind: str, eye: np.ndarray, target: np.ndarray, light: Light) -> tuple[np.ndarray, np.ndarray]:
    """Eye and target of a wrong depth buffer: the rear camera, a top-down view, or the light's
    view (a shadow map)."""
    f = target - eye
    fh = np.array([f[0], f[1], 0.0])
    fh /= max(float(np.linalg.norm(fh)), 1e-9)
    if kind == "rear":
        return eye, eye - f
    if kind == "topdown":
        return eye + np.array([0.0, 0.0, 12.0]), eye + fh * 3.0
    d = np.asarray(light.direction, float)
    d /= max(float(np.linalg.norm(d)), 1e-9)
    return eye + d * 25.0 + np.array([0.0, 0.0, 5.0]), eye + fh * 5.0


def _shift(depth: np.ndarray, dx: int, dy: int) -> np.ndarray:
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(depth, m, (depth.shape[1], depth.shape[0]), flags=cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_REPLICATE)


def render_capture(out: Path, index: int, cfg: RenderConfig, progress: tqdm | None = None) -> Path:
    """Render and write one capture; return its directory."""
    rng = np.random.default_rng([cfg.seed, index])
    layouts_rng = np.random.default_rng([cfg.seed, index, 1])
    style_rng = np.random.default_rng([cfg.seed, index, 2])  # the family's draws: classic makes none
    family = FAMILIES[cfg.families[index % len(cfg.families)]]
    indoor = make_layout("indoor", layouts_rng, (0.0, 0.0, 0.0))
    outdoor = make_layout("outdoor", layouts_rng, OUTDOOR_OFFSET)
    if family.periodic:
        indoor, outdoor = with_periodic_textures(indoor, style_rng), with_periodic_textures(outdoor, style_rng)
    if family.open_ground:
        outdoor = with_open_ground(outdoor)
    plan: Plan = plan_capture(cfg.frames, cfg.fps, [("indoor", indoor.origin, indoor.extent),
                                                    ("outdoor", outdoor.origin, outdoor.extent)],
                              rng, cfg.defects, cfg.defect_rate, cfg.variants)
    layouts = [indoor, outdoor]
    styles: list[ShotStyle] = []
    for s_i, shot in enumerate(plan.shots):
        frames_of = [f for f in plan.frames if f.shot == s_i]
        if family.name == "classic":
            styles.append(ShotStyle(layouts[shot.layout].kind))
            continue
        style, shot.trajectory = style_shot(family, layouts[shot.layout].kind, shot.trajectory,
                                            len(frames_of) / cfg.fps, cfg.vfov_deg, style_rng,
                                            layouts[shot.layout].origin)
        styles.append(style)
    cap = Path(out) / f"{cfg.name_prefix}{index:03d}"
    (cap / "rgb").mkdir(parents=True, exist_ok=True)
    (cap / "depth").mkdir(exist_ok=True)
    backend = PybulletBackend(cfg.width, cfg.height, cfg.vfov_deg, cfg.near, cfg.far)
    try:
        for layout in layouts:
            backend.add_layout(layout, layouts_rng)
        menu = menu_screen(cfg.height, cfg.width, index)
        by_frame: dict[int, list[Defect]] = {}
        for d in plan.defects:
            for i in range(d.first_frame, d.last_frame + 1):
                by_frame.setdefault(i, []).append(d)
        state = _State()
        lines = []
        for i, fp in enumerate(plan.frames):
            shot = plan.shots[fp.shot]
            style = styles[fp.shot]
            eye, target = shot.trajectory.pose(fp.t_shot)
            backend.set_time(i / cfg.fps)
            backend.set_fov(style.fov(fp.t_shot, cfg.vfov_deg))
            light = _light(shot, fp.t_shot)
            rgb, depth = backend.render(eye, target, light)
            if layouts[shot.layout].sky:
                nothing = depth >= 1.0
                clear = sky(cfg.height, cfg.width, shot.light_level)
                if style.clouds is not None:
                    clear = cloudy_sky(clear, backend.K, cam_to_world(eye, target), style.clouds)
                rgb[nothing] = clear[nothing]
            if style.fog is not None:
                metres = to_planar_metres(depth, "gl", near=cfg.near, far=cfg.far, invalid=[1.0])
                metres = np.where(metres > 0, metres, cfg.far)  # the sky is as hazy as the far plane
                level = 205 * shot.light_level
                rgb = overlays.apply_fog(rgb, metres, style.fog, (level, level * 1.02, level * 1.05))
            span_defects = by_frame.get(i, [])
            weapon = style.weapon
            for d in span_defects:
                if d.type == "weapon":
                    weapon = None  # drawn below, in RGB only
            weapon_drawn = None  # the weapon pass's colour, where it draws and its window depth
            if weapon is not None:  # a weapon pass that writes depth too: a correct capture
                w_rgb, w_mask, w_m = overlays.weapon_layer(cfg.height, cfg.width, weapon, i / cfg.fps, 1.5)
                weapon_drawn = (w_rgb, w_mask, overlays.gl_window_depth(w_m, cfg.near, cfg.far))
                rgb, depth = overlays.weapon_pass(rgb, depth, *weapon_drawn)
            clean_depth, clean_rgb = depth, rgb
            for d in span_defects:
                variant = d.params.get("variant", "")
                if d.type == "misaligned":
                    if variant == "jitter":
                        jr = np.random.default_rng([cfg.seed, index, 3, i])
                        j = d.params["jitter_px"] * cfg.width / 256.0
                        dx, dy = int(round(jr.uniform(-j, j))), int(round(jr.uniform(-j / 2, j / 2)))
                        if dx == 0 and dy == 0:
                            dx = 1 + int(j // 2)
                        depth = _shift(depth, dx, dy)
                    else:
                        e2, t2 = _misaligned_view(eye, target, d.params)
                        _, depth = backend.render(e2, t2, light)
                        if weapon_drawn is not None:  # the weapon pass is the camera's own: not misaligned
                            _, depth = overlays.weapon_pass(rgb, depth, *weapon_drawn)
                elif d.type == "depth_lag":
                    late = state.prev2_depth if variant == "lag2" else state.prev_depth
                    if late is not None:
                        depth = late
                elif d.type == "frozen_depth":
                    if variant == "half_rate":
                        if (i - d.first_frame) % 2 == 1 and state.prev_depth is not None:
                            depth = state.prev_depth
                    else:
                        depth = state.frozen.setdefault(id(d), clean_depth)
                elif d.type == "hud":
                    f = target - eye
                    rgb = overlays.draw_hud(rgb, i, variant or "full", float(np.arctan2(f[1], f[0])))
                elif d.type == "weapon":
                    w_rgb, w_mask, _ = overlays.weapon_layer(cfg.height, cfg.width, variant or "rifle", i / cfg.fps,
                                                             d.params.get("sway_px", 1.5))
                    rgb = np.where(w_mask[..., None], w_rgb, rgb)
                elif d.type == "wrong_buffer":
                    e2, t2 = _other_view(variant or "rear", eye, target, light)
                    _, depth = backend.render(e2, t2, light)
                    if variant == "shadow":  # a shadow map: coarse
                        small = cv2.resize(depth, (max(1, cfg.width // 4), max(1, cfg.height // 4)),
                                           interpolation=cv2.INTER_NEAREST)
                        depth = cv2.resize(small, (cfg.width, cfg.height), interpolation=cv2.INTER_NEAREST)
            for d in span_defects:  # ground truth: how wrong this frame came out
                if d.type in ("hud", "weapon"):
                    err = overlay_error(rgb, clean_rgb)
                elif d.type == "wrong_nearfar":  # the buffer is right; its metres, read with the written far, are not
                    err = depth_error_planes(depth, cfg.near, cfg.far * d.params["far_factor"], cfg.far)
                else:
                    err = depth_error(depth, clean_depth, cfg.near, cfg.far)
                for key, value in err.items():
                    d.params.setdefault(f"frame_{key}", []).append(value)
            state.prev2_depth, state.prev_depth = state.prev_depth, clean_depth
            if fp.menu:
                rgb, depth = menu.copy(), np.ones_like(depth)
            elif fp.brightness < 1:
                rgb = (rgb.astype(np.float32) * fp.brightness).astype(np.uint8)
                if fp.brightness == 0:
                    depth = np.ones_like(depth)
            name = f"{i:06d}"
            ext = cfg.rgb_format
            params = [cv2.IMWRITE_PNG_COMPRESSION, 1] if ext == "png" else [cv2.IMWRITE_JPEG_QUALITY, 92]
            cv2.imwrite(str(cap / "rgb" / f"{name}.{ext}"), rgb[..., ::-1], params)
            np.save(cap / "depth" / f"{name}.npy", depth.astype(np.float32))
            lines.append(json.dumps({
                "index": i, "time": round(i / cfg.fps, 6), "rgb": f"rgb/{name}.{ext}", "depth": f"depth/{name}.npy",
                "K": np.round(backend.K, 6).tolist(), "projection": np.round(backend.projection, 9).tolist(),
                "cam_to_world": np.round(cam_to_world(eye, target), 9).tolist(),
            }))
            if progress is not None:
                progress.update(1)
    finally:
        backend.close()
    far_written = cfg.far
    for d in plan.defects:
        if d.type == "wrong_nearfar":
            far_written = cfg.far * d.params["far_factor"]
            d.params.update({"true_far": cfg.far, "written_far": far_written})
    meta = {
        "format": "dav-capture/1", "engine": "dav-render (pybullet TinyRenderer)", "fps": cfg.fps,
        "width": cfg.width, "height": cfg.height,
        "depth": {"encoding": "npy", "convention": "gl", "near": cfg.near, "far": far_written, "invalid": [1.0]},
    }
    (cap / "capture.json").write_text(json.dumps(meta, indent=1))
    (cap / "frames.jsonl").write_text("\n".join(lines) + "\n")
    (cap / "segments.json").write_text(json.dumps(plan.segments, indent=1))
    (cap / "defects.json").write_text(json.dumps(defects_json(plan.defects), indent=1))
    shots = [{"family": family.name, **asdict(st)} for st in styles]
    (cap / "shots.json").write_text(json.dumps(shots, indent=1))
    return cap


def render_captures(out_dir: Path, config: RenderConfig, progress: bool = True) -> list[Path]:
    """Render ``config.scenes`` captures into ``out_dir``; return their directories."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=config.scenes * config.frames, desc="rendering", unit="frame", disable=not progress)
    try:
        return [render_capture(out, i, config, bar) for i in range(config.scenes)]
    finally:
        bar.close()
