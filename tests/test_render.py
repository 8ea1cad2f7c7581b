"""The synthetic capture engine: metres right for known geometry, edges aligned, determinism, defects."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dav_builder.capture.dav import DavCapture
from dav_builder.capture.depth import to_planar_metres
from dav_builder.render.backend import Light, PybulletBackend
from dav_builder.render.engine import RenderConfig, render_captures
from dav_builder.render.scene import Layout, Prop

LIGHT = Light((0.3, 0.2, 1.0), (1, 1, 1), 0.6, 0.5)
W, H = 160, 120


def render_scene(props: list[Prop], eye=(0.0, 0.0, 1.0), target=(1.0, 0.0, 1.0)):
    """RGB, planar metres (as the builder converts the engine's buffer) and the K the engine writes."""
    backend = PybulletBackend(W, H, vfov_deg=60.0, near=0.1, far=100.0)
    try:
        backend.add_layout(Layout("indoor", (0, 0, 0), props), np.random.default_rng(0))
        rgb, buf = backend.render(np.array(eye), np.array(target), LIGHT)
        metres = to_planar_metres(buf, "gl", near=0.1, far=100.0, invalid=[1.0])
        return rgb, metres, backend.K
    finally:
        backend.close()


def wall(x: float, colour=(0.6, 0.6, 0.6)) -> Prop:
    """A wall facing the camera (which looks along +x) whose front face is at ``x``."""
    return Prop("box", (0.05, 20.0, 20.0), (x + 0.05, 0.0, 1.0), colour)


@pytest.mark.parametrize("distance", [2.0, 5.0, 17.0])
def test_wall_at_known_distance_converts_to_the_right_planar_metres(distance):
    _, metres, _ = render_scene([wall(distance)])
    assert (metres > 0).all()
    # planar depth of a fronto-parallel wall is the same in every pixel, corners included (not ray length)
    assert np.abs(metres / distance - 1).max() < 0.01


def test_empty_background_is_invalid_depth():
    _, metres, _ = render_scene([Prop("box", (0.5, 0.5, 0.5), (4.0, 0.0, 1.0), (0.5, 0.5, 0.5))])
    assert (metres == 0).mean() > 0.5  # nothing behind the box: no depth, not "far plane metres"
    assert np.abs(metres[metres > 0] - 3.5).max() < 0.035


def test_floor_plane_rows_match_the_written_intrinsics():
    # the camera 1.5 m above a floor, looking level: floor row v has planar depth h * fy / (v - cy)
    floor = Prop("box", (60.0, 60.0, 0.05), (0.0, 0.0, -0.05), (0.5, 0.5, 0.5))
    _, metres, K = render_scene([floor], eye=(0, 0, 1.5), target=(1, 0, 1.5))
    rows = np.arange(H, dtype=float)
    lower = rows > K[1, 2] + 3
    expect = 1.5 * K[1, 1] / (rows[lower] - K[1, 2])
    got = np.median(metres[lower][:, W // 4 : 3 * W // 4], axis=1)
    assert np.abs(got / expect - 1).max() < 0.01


@pytest.mark.parametrize("u_edge", [70.25, 70.75, 101.4])
def test_a_vertical_edge_lands_where_the_written_intrinsics_say(u_edge):
    # a wall 5 m ahead covering world y > y0 (the image's left part, up to column u_edge)
    backend = PybulletBackend(W, H, vfov_deg=60.0, near=0.1, far=100.0)
    K = backend.K
    backend.close()
    y0 = (K[0, 2] - u_edge) * 5 / K[0, 0]
    _, metres, _ = render_scene([Prop("box", (0.05, 10.0, 10.0), (5.05, y0 + 10, 1.0), (0.5, 0.5, 0.5))])
    last = int(np.where(metres[H // 2] > 0)[0].max())
    assert last == int(np.floor(u_edge))  # pixels whose centre lies left of the edge


def test_depth_edges_line_up_with_rgb_edges():
    box = Prop("box", (0.5, 0.6, 0.6), (3.5, 0.3, 1.0), (0.9, 0.1, 0.1))
    rgb, metres, _ = render_scene([wall(8.0, (0.2, 0.6, 0.9)), box])
    in_depth = metres < 6.0
    red = (rgb[..., 0].astype(int) - rgb[..., 2].astype(int)) > 40
    assert in_depth.sum() > 200
    iou = (in_depth & red).sum() / (in_depth | red).sum()
    assert iou > 0.97, iou
    # the box's left and right edges are at the same columns in both
    cols_d = np.where(in_depth.any(0))[0]
    cols_r = np.where(red.any(0))[0]
    assert abs(cols_d[0] - cols_r[0]) <= 1 and abs(cols_d[-1] - cols_r[-1]) <= 1


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_rendering_is_deterministic_for_a_seed(tmp_path):
    cfg = RenderConfig(scenes=1, frames=12, width=48, height=32, seed=4)
    render_captures(tmp_path / "a", cfg, progress=False)
    render_captures(tmp_path / "b", cfg, progress=False)
    render_captures(tmp_path / "c", RenderConfig(scenes=1, frames=12, width=48, height=32, seed=5), progress=False)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert a == b
    assert a != c


def test_captures_follow_the_format_and_carry_cuts_fades_and_menus(tmp_path):
    caps = render_captures(tmp_path, RenderConfig(scenes=1, frames=120, width=64, height=48, seed=2), progress=False)
    cap = DavCapture(caps[0])
    infos = list(cap.frames())
    assert len(infos) == 120
    meta = json.loads((caps[0] / "capture.json").read_text())
    assert meta["depth"]["convention"] == "gl" and meta["depth"]["encoding"] == "npy"
    kinds = {s["type"] for s in json.loads((caps[0] / "segments.json").read_text())}
    assert {"shot", "menu"} <= kinds and kinds & {"fade", "black"}
    shots = {s["shot"] for s in json.loads((caps[0] / "segments.json").read_text()) if s["type"] == "shot"}
    assert len(shots) >= 2  # at least one hard cut
    assert cap.read_depth(infos[10]).shape == (48, 64) and cap.read_rgb(infos[10]).shape == (48, 64, 3)
    assert infos[10].K is not None and infos[10].cam_to_world is not None


def test_planted_defects_are_written_with_their_ground_truth(tmp_path):
    DEFECTS = ("depth_lag", "misaligned", "hud", "wrong_nearfar", "frozen_depth")  # weapon, wrong_buffer: below
    caps = render_captures(tmp_path, RenderConfig(scenes=1, frames=300, width=48, height=32, seed=3,
                                                  defects=DEFECTS, defect_rate=1.0), progress=False)
    root = caps[0]
    defects = json.loads((root / "defects.json").read_text())
    assert {d["type"] for d in defects} == set(DEFECTS)
    for d in defects:
        assert 0 <= d["first_frame"] <= d["last_frame"] < 300
    frozen = next(d for d in defects if d["type"] == "frozen_depth")
    span = range(frozen["first_frame"], frozen["last_frame"] + 1)
    depths = [np.load(root / "depth" / f"{i:06d}.npy") for i in span]
    assert all(np.array_equal(depths[0], x) for x in depths[1:]) and len(depths) >= 2
    # how wrong each defective frame came out, frame by frame: frozen depth's first frame is right
    for d in defects:
        n = d["last_frame"] - d["first_frame"] + 1
        assert len(d["params"]["frame_wrong"]) == len(d["params"]["frame_abs_rel"]) == n
    assert frozen["params"]["frame_wrong"][0] == 0.0 and max(frozen["params"]["frame_wrong"]) > 0.0
    misaligned = next(d for d in defects if d["type"] == "misaligned")
    assert min(misaligned["params"]["frame_abs_rel"]) > 0.0
    hud = next(d for d in defects if d["type"] == "hud")
    assert all(0.0 < w < 0.5 for w in hud["params"]["frame_wrong"])  # pixels drawn over by the HUD
    nearfar = next(d for d in defects if d["type"] == "wrong_nearfar")
    written = json.loads((root / "capture.json").read_text())["depth"]["far"]
    assert written == pytest.approx(nearfar["params"]["written_far"]) != nearfar["params"]["true_far"]


def test_the_ground_truth_measures_how_wrong_a_frame_is_in_metres():
    from dav_builder.capture.depth import from_planar_metres
    from dav_builder.render.truth import depth_error, depth_error_planes

    n, f = 0.1, 150.0
    true = np.full((4, 10), 2.0)
    true[:, 0] = 0.0  # no depth: sky
    off = true.copy()
    off[:, 1:3] = 2.2  # 10 % too far on 8 of 40 pixels
    off[0, 0] = 3.0  # depth where there is none
    gl = lambda z: np.where(z > 0, from_planar_metres(np.where(z > 0, z, 1.0), "gl", near=n, far=f), 1.0)
    assert depth_error(gl(true), gl(true), n, f) == {"abs_rel": 0.0, "wrong": 0.0}
    err = depth_error(gl(off), gl(true), n, f)
    assert err["wrong"] == pytest.approx(9 / 40) and err["abs_rel"] == pytest.approx(0.1 * 8 / 36, rel=1e-3)
    # the same buffer read with twice the far plane: nearly right up close, wrong far away
    assert depth_error_planes(gl(true), n, 2 * f, f)["abs_rel"] < 0.01
    assert depth_error_planes(gl(np.full((2, 2), 60.0)), n, 2 * f, f)["wrong"] == 1.0


def test_scene_families_write_their_features_and_zoom_changes_the_intrinsics(tmp_path):
    from dav_builder.render.families import FAMILIES

    cfg = RenderConfig(scenes=2, frames=80, width=64, height=36, seed=11, families=("fog_fields", "tiled_maze"))
    caps = render_captures(tmp_path, cfg, progress=False)
    shots = [json.loads((c / "shots.json").read_text()) for c in caps]
    assert [s[0]["family"] for s in shots] == ["fog_fields", "tiled_maze"]
    assert all(s["periodic"] for s in shots[1]) and not any(s["periodic"] for s in shots[0])
    outdoor = [s for s in shots[0] if s["layout"] == "outdoor"]
    assert outdoor and all(FAMILIES["fog_fields"].fog[0] <= s["fog"] <= FAMILIES["fog_fields"].fog[1] for s in outdoor)
    # a zoom changes K (and the projection) frame by frame; without one K stays
    from dav_builder.render.families import ShotStyle

    style = ShotStyle("outdoor", "zoom", zoom=(60.0, 30.0, 0.1, 0.5))
    assert style.fov(0.0, 60.0) == 60.0 and style.fov(1.0, 60.0) == pytest.approx(30.0)
    backend = PybulletBackend(64, 36)
    try:
        k60 = backend.K.copy()
        backend.set_fov(30.0)
        assert backend.K[0, 0] > 2 * k60[0, 0] * 0.9 and backend.K[0, 2] == k60[0, 2]
    finally:
        backend.close()
    with pytest.raises(ValueError, match="unknown scene family"):
        RenderConfig(families=("nope",))


def test_fog_and_weapons_touch_rgb_and_depth_as_a_game_does():
    from dav_builder.render import overlays

    rgb = np.full((36, 64, 3), 40, np.uint8)
    metres = np.full((36, 64), 10.0)
    metres[:10] = 0.0  # sky
    fogged = overlays.apply_fog(rgb, metres, 5.0, (200, 200, 200))
    assert abs(int(fogged[20, 5, 0]) - (40 * np.exp(-2) + 200 * (1 - np.exp(-2)))) <= 1 and fogged[0, 0, 0] == 200
    img, where, w_m = overlays.weapon_layer(72, 128, "rifle", 0.0, 2.0)
    assert 0.02 < where.mean() < 0.2 and where[-1].any() and not where[:20].any()
    assert (w_m[where] >= 0.25).all() and (w_m[where] <= 0.7).all() and (w_m[~where] == 0).all()
    # the weapon's pass writes its depth wherever it draws, also where a wall is nearer than the
    # muzzle (depth-tested, the wall's depth would lie under the weapon's colour: RGB without depth)
    window = overlays.gl_window_depth(w_m, 0.1, 150.0)
    scene = np.full((72, 128), overlays.gl_window_depth(np.array(0.3), 0.1, 150.0), np.float32)
    drawn, drawn_depth = overlays.weapon_pass(np.zeros((72, 128, 3), np.uint8), scene, img, where, window)
    assert (drawn[where] == img[where]).all() and (drawn_depth[where] == window[where]).all()
    assert (drawn_depth[~where] == scene[~where]).all() and (window[where] > scene[where]).any()
    d = overlays.gl_window_depth(np.array([0.1, 150.0, 1.0]), 0.1, 150.0)
    assert d[0] == pytest.approx(0.0) and d[1] == pytest.approx(1.0) and 0 < d[2] < 1
    for kind in overlays.HUD_KINDS:
        assert (overlays.draw_hud(rgb, 3, kind) != rgb).any()


def test_defect_variants_are_planted_and_described(tmp_path):
    from dav_builder.render.engine import parse_variants
    from dav_builder.render.timeline import VARIANTS

    variants = parse_variants("pistol,shadow,subtitles")
    assert variants == {"weapon": ("pistol",), "wrong_buffer": ("shadow",), "hud": ("subtitles",)}
    caps = render_captures(tmp_path, RenderConfig(scenes=1, frames=200, width=64, height=36, seed=5,
                                                  defects=("weapon", "wrong_buffer", "hud"), defect_rate=1.0,
                                                  families=("fps_arena",), variants=variants), progress=False)
    root = caps[0]
    defects = {d["type"]: d for d in json.loads((root / "defects.json").read_text())}
    assert {d["params"]["variant"] for d in defects.values()} == {"pistol", "shadow", "subtitles"}
    weapon = defects["weapon"]
    i = weapon["first_frame"]
    assert min(weapon["params"]["frame_wrong"]) > 0.0  # RGB drawn over
    assert max(defects["wrong_buffer"]["params"]["frame_abs_rel"]) > 0.1  # depth from the light's view
    assert np.load(root / "depth" / f"{i:06d}.npy").min() > 0.5  # no weapon in depth (near 0.25 m is ~0.6)
    with pytest.raises(ValueError, match="unknown defect variant"):
        parse_variants("bazooka")
    assert parse_variants("all") == VARIANTS


def test_clouds_lie_at_infinity_moving_when_the_camera_turns_not_when_it_travels(tmp_path):
    from dav_builder.render.engine import cloudy_sky, sky
    from dav_builder.render.trajectory import cam_to_world

    K = np.array([[80.0, 0, 64], [0, 80.0, 36], [0, 0, 1]])
    base = sky(72, 128, 1.0)
    eye, look_up = np.array([0.0, 0.0, 2.0]), np.array([10.0, 0.0, 6.0])
    a = cloudy_sky(base, K, cam_to_world(eye, eye + look_up), seed=5)
    assert (np.abs(a.astype(int) - base).max(-1) > 40).mean() > 0.1  # clouds cover part of the sky
    # travelling 50 m leaves every pixel's cloud cover as it was; turning moves it
    moved = eye + np.array([30.0, 40.0, 0.0])
    assert np.array_equal(cloudy_sky(base, K, cam_to_world(moved, moved + look_up), seed=5), a)
    turned = np.array([10.0, 1.0, 6.0])
    assert (cloudy_sky(base, K, cam_to_world(eye, eye + turned), seed=5) != a).mean() > 0.1
    # a family with clouds records the layer's seed for its outdoor shots
    cfg = RenderConfig(scenes=1, frames=40, width=64, height=36, seed=3, families=("cloud_hills",))
    shots = json.loads((render_captures(tmp_path, cfg, progress=False)[0] / "shots.json").read_text())
    assert shots[0]["layout"] == "outdoor" and shots[0]["clouds"] is not None
