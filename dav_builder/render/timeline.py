"""What happens when in a capture: shots, cuts, fades, menus, lighting and planted defects.

Pure planning from a seeded generator; the engine then renders frame by frame from the plan.
The plan is also the ground truth written beside each capture (``segments.json``,
``defects.json``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from dav_builder.render.trajectory import KINDS, Trajectory, make_trajectory

DEFECTS = ("depth_lag", "misaligned", "hud", "wrong_nearfar", "frozen_depth", "weapon", "wrong_buffer")
#: The ways each defect can be made (``params.variant``); the first is the one drawn when no
#: variants are asked for.  ``weapon`` is a first-person weapon drawn in RGB but missing from
#: depth; ``wrong_buffer`` is depth from another view altogether.
VARIANTS: dict[str, tuple[str, ...]] = {
    "depth_lag": ("lag1", "lag2"),
    "misaligned": ("shift", "eye", "jitter"),
    "hud": ("full", "statusbar", "crosshair", "minimap", "subtitles"),
    "frozen_depth": ("held", "half_rate"),
    "weapon": ("rifle", "pistol"),
    "wrong_buffer": ("rear", "topdown", "shadow"),
}
#: Share of spans that last only 1 to 4 frames when variants are asked for.
SHORT_SHARE = 0.3
FADE_LEN, BLACK_LEN, MENU_LEN = 5, 2, 8


@dataclass
class Shot:
    layout: int
    trajectory: Trajectory
    light_dir: tuple[float, float, float]
    light_level: float
    light_change_at: float | None = None
    """Seconds into the shot when the lighting changes (a lamp switched, a cloud); None = steady."""
    light_change: float = 1.0


@dataclass
class FramePlan:
    shot: int
    t_shot: float
    """Seconds since the shot began."""
    brightness: float = 1.0
    """1 normally, less during fades, 0 for black frames."""
    menu: bool = False


@dataclass
class Defect:
    type: str
    first_frame: int
    last_frame: int
    params: dict = field(default_factory=dict)


@dataclass
class Plan:
    shots: list[Shot]
    frames: list[FramePlan]
    segments: list[dict]
    defects: list[Defect]


def _segments(frames: list[FramePlan]) -> list[dict]:
    """Runs of frames with the same shot and kind, as ground truth for the scene splitter."""
    def kind(f: FramePlan) -> str:
        if f.menu:
            return "menu"
        if f.brightness == 0:
            return "black"
        if f.brightness < 1:
            return "fade"
        return "shot"

    out: list[dict] = []
    for i, f in enumerate(frames):
        k, s = kind(f), (f.shot if not f.menu else -1)
        if out and out[-1]["type"] == k and out[-1]["shot"] == s:
            out[-1]["last_frame"] = i
        else:
            out.append({"type": k, "shot": s, "first_frame": i, "last_frame": i})
    return out


def plan_capture(
    frames: int, fps: float, layouts: list[tuple[str, tuple[float, float, float], float]],
    rng: np.random.Generator, defects: tuple[str, ...] = (), defect_rate: float = 0.0,
    variants: dict[str, tuple[str, ...]] | None = None,
) -> Plan:
    """Plan one capture of ``frames`` frames over the given layouts (kind, origin, extent)."""
    n_shots = int(np.clip(frames // 40, 1, 4))
    bounds = np.linspace(0, frames, n_shots + 1).astype(int)
    shots: list[Shot] = []
    plan: list[FramePlan] = []
    for s in range(n_shots):
        li = s % len(layouts) if s else int(rng.integers(len(layouts)))
        kind, origin, extent = layouts[li]
        traj_kinds = ("walk", "orbit", "fly") if kind == "indoor" else KINDS
        tk = str(rng.choice(traj_kinds))
        start = np.array(origin) + np.append(rng.uniform(-0.4, 0.4, 2) * extent, 0.0)
        if tk == "drive":
            start = np.array(origin) + np.array([rng.uniform(-30, 0), rng.choice([-1.5, 1.5]), 0.0])
        heading = float(rng.uniform(0, 2 * np.pi)) if tk != "drive" else 0.0
        if kind == "indoor" and tk in ("walk", "fly"):
            heading = float(np.arctan2(-(start - np.array(origin))[1], -(start - np.array(origin))[0]))
        traj = make_trajectory(tk, start, heading, rng)
        if kind == "indoor" and tk == "fly":
            traj = Trajectory("walk", traj.origin, traj.heading, 1.0, 1.2, traj.radius, 0.1)  # a drone in a room
        change = float(rng.uniform(0.3, 0.8) * (bounds[s + 1] - bounds[s]) / fps) if rng.random() < 0.4 else None
        shots.append(Shot(li, traj, tuple(float(v) for v in rng.uniform([-1, -1, 0.5], [1, 1, 1.5])),
                          float(rng.uniform(0.75, 1.0)), change, float(rng.choice([0.6, 1.3]))))
        for i in range(bounds[s], bounds[s + 1]):
            plan.append(FramePlan(s, (i - bounds[s]) / fps))
    # transitions between shots: a hard cut, a fade through black, or a menu screen
    for s in range(1, n_shots):
        b = int(bounds[s])
        how = rng.choice(["cut", "fade", "menu"])
        if how == "fade" and b - FADE_LEN - BLACK_LEN > bounds[s - 1] + 8 and b + FADE_LEN < bounds[s + 1] - 8:
            for k in range(FADE_LEN):
                plan[b - BLACK_LEN - FADE_LEN + k].brightness = 1 - (k + 1) / (FADE_LEN + 1)
                plan[b + k].brightness = (k + 1) / (FADE_LEN + 1)
            for k in range(BLACK_LEN):
                plan[b - BLACK_LEN + k].brightness = 0.0
        elif how == "menu" and b - MENU_LEN > bounds[s - 1] + 8:
            for k in range(MENU_LEN):
                plan[b - MENU_LEN + k].menu = True
    planted = plant_defects(plan, frames, rng, defects, defect_rate, variants)
    return Plan(shots, plan, _segments(plan), planted)


def plant_defects(plan: list[FramePlan], frames: int, rng: np.random.Generator,
                  defects: tuple[str, ...], rate: float,
                  variants: dict[str, tuple[str, ...]] | None = None) -> list[Defect]:
    """Choose non-overlapping spans of clean shot frames for each defect type drawn.

    With ``variants`` (defect type -> the variants it may take), each defect of a listed type
    draws its variant from those and lasts 1 to 4 frames with probability :data:`SHORT_SHARE`
    (16 to 40 otherwise); without, every defect is its first variant and lasts 16 to 40 frames
    (the engine's original plan, draw for draw)."""
    out: list[Defect] = []
    used = np.zeros(frames, bool)
    clean = np.array([f.brightness == 1 and not f.menu for f in plan])
    for kind in defects:
        if kind not in DEFECTS:
            raise ValueError(f"unknown defect {kind!r}; known: {DEFECTS}")
        if rng.random() >= rate:
            continue
        if kind == "wrong_nearfar":
            out.append(Defect(kind, 0, frames - 1, {"far_factor": float(rng.choice([0.5, 2.0]))}))
            continue
        chosen = (variants or {}).get(kind)
        variant = VARIANTS.get(kind, ("",))[0]
        if chosen:
            variant = str(rng.choice(list(chosen)))
            length = int(rng.integers(1, 5)) if rng.random() < SHORT_SHARE else int(rng.integers(16, 41))
        else:
            length = int(rng.integers(16, 41))
        for _ in range(50):
            a = int(rng.integers(1, max(2, frames - length)))
            b = min(frames - 1, a + length - 1)
            shot = plan[a].shot
            if clean[a : b + 1].all() and not used[a - 1 : b + 2].any() and all(plan[i].shot == shot for i in range(a, b + 1)):
                params: dict = {}
                if kind == "misaligned":
                    params = {"offset_m": float(rng.uniform(0.15, 0.3)), "yaw_deg": float(rng.uniform(2.0, 4.0))}
                    if variant == "eye":  # the other eye of a stereo pair: moved, not turned
                        params = {"offset_m": float(rng.uniform(0.06, 0.12)), "yaw_deg": 0.0}
                    elif variant == "jitter":  # every frame shifted by its own few pixels
                        params = {"jitter_px": float(rng.uniform(2.0, 6.0))}
                elif kind == "weapon":
                    params = {"sway_px": float(rng.uniform(0.3, 3.0))}
                if variant:
                    params["variant"] = variant
                out.append(Defect(kind, a, b, params))
                used[a : b + 1] = True
                break
    return out


def defects_json(defects: list[Defect]) -> list[dict]:
    return [asdict(d) for d in defects]
