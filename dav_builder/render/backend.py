"""The renderer: pybullet's TinyRenderer, a software rasteriser that runs on any CPU.

Why this one (measurements in docs/renderer.md): it installs from PyPI with no system libraries
(CI and laptops without a GPU or EGL run it as they are), it is deterministic, it renders about
50 frames/s at 256x144 with ~30 textured objects on one core here, and it returns the OpenGL
window-depth buffer and the projection matrix that produced it: exactly what a game capture
gives, so the builder's conversion runs on real engine output.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import cv2
import numpy as np

from dav_builder.render.scene import Layout, Prop, prop_position, texture_image


FAR_SNAP = np.float32(1.0 - 1e-6)
"""Window depths at or above this are "nothing" (at 150 m far and 0.1 m near: beyond about 149.8 m)."""


def tiny_renderer_intrinsics(projection: np.ndarray, width: int, height: int) -> np.ndarray:
    """K of TinyRenderer's images, in the capture format's convention (pixel centres at integers).

    The projection matrix alone gives cx = W/2 - 0.5 and cy = H/2 - 0.5.  TinyRenderer samples
    pixel (c, r) at OpenGL window coordinates (c, H - 1 - r) (integer positions, where OpenGL
    takes pixel centres at +0.5) and flips the rows, so its images sit half a pixel right and
    half a pixel up of that: cx = W/2, cy = H/2 - 1.  Measured in tests/test_render.py with a
    wall edge and a floor plane at known positions.
    """
    from dav_builder.capture.depth import intrinsics_from_projection

    K, _, _ = intrinsics_from_projection(projection, width, height, "gl")
    K = K.copy()
    K[0, 2] += 0.5
    K[1, 2] -= 0.5
    return K


@dataclass
class Light:
    direction: tuple[float, float, float]
    colour: tuple[float, float, float]
    ambient: float
    diffuse: float


class PybulletBackend:
    """One renderer world in one process (pybullet ``DIRECT`` mode)."""

    def __init__(self, width: int, height: int, vfov_deg: float = 60.0, near: float = 0.1, far: float = 150.0):
        from dav_builder.logs import quiet_fds

        with quiet_fds():  # pybullet's C code prints a "build time" banner on import
            import pybullet

            self.p = pybullet
            self.client = pybullet.connect(pybullet.DIRECT)
        self.width, self.height = width, height
        self.near, self.far = near, far
        self.vfov = None
        self.set_fov(vfov_deg)
        self._tex_dir = tempfile.mkdtemp(prefix="dav-render-tex-")
        self._textures: dict[tuple, int] = {}
        self._moving: list[tuple[int, Prop]] = []

    def set_fov(self, vfov_deg: float) -> None:
        """Set the vertical field of view (a zoom): the projection matrix and ``K`` follow."""
        if vfov_deg == self.vfov:
            return
        self.vfov = vfov_deg
        proj = self.p.computeProjectionMatrixFOV(vfov_deg, self.width / self.height, self.near, self.far,
                                                 physicsClientId=self.client)
        self._proj_gl = proj
        self.projection = np.array(proj, dtype=np.float64).reshape(4, 4).T  # pybullet is column-major
        self.K = tiny_renderer_intrinsics(self.projection, self.width, self.height)

    def close(self) -> None:
        try:
            self.p.disconnect(physicsClientId=self.client)
        except Exception:  # already disconnected
            pass
        for f in os.listdir(self._tex_dir):
            os.unlink(os.path.join(self._tex_dir, f))
        os.rmdir(self._tex_dir)

    def _texture(self, prop: Prop, rng: np.random.Generator) -> int | None:
        if prop.texture == "plain":
            return None
        key = (prop.texture, tuple(round(c, 2) for c in prop.colour))
        if key not in self._textures:
            img = texture_image(prop.texture, prop.colour, rng)
            path = os.path.join(self._tex_dir, f"{len(self._textures)}.png")
            cv2.imwrite(path, img[..., ::-1])
            self._textures[key] = self.p.loadTexture(path, physicsClientId=self.client)
        return self._textures[key]

    def add_layout(self, layout: Layout, rng: np.random.Generator) -> None:
        p = self.p
        for prop in layout.props:
            kw: dict = {}
            if prop.shape == "box":
                kind, kw["halfExtents"] = p.GEOM_BOX, list(prop.size)
            elif prop.shape == "sphere":
                kind, kw["radius"] = p.GEOM_SPHERE, prop.size[0]
            elif prop.shape == "cylinder":
                kind, kw["radius"], kw["length"] = p.GEOM_CYLINDER, prop.size[0], prop.size[1]
            else:
                kind, kw["radius"], kw["length"] = p.GEOM_CAPSULE, prop.size[0], prop.size[1]
            vis = p.createVisualShape(kind, rgbaColor=[*prop.colour, 1.0], physicsClientId=self.client, **kw)
            orn = p.getQuaternionFromEuler([0, 0, prop.yaw])
            body = p.createMultiBody(0, -1, vis, list(prop.position), orn, physicsClientId=self.client)
            tex = self._texture(prop, rng)
            if tex is not None:
                p.changeVisualShape(body, -1, textureUniqueId=tex, rgbaColor=[1, 1, 1, 1], physicsClientId=self.client)
            if prop.motion is not None:
                self._moving.append((body, prop))

    def set_time(self, t: float) -> None:
        """Move the moving props to where they are at time ``t``."""
        for body, prop in self._moving:
            orn = self.p.getQuaternionFromEuler([0, 0, prop.yaw + 0.3 * t])
            self.p.resetBasePositionAndOrientation(body, prop_position(prop, t), orn, physicsClientId=self.client)

    def render(self, eye: np.ndarray, target: np.ndarray, light: Light) -> tuple[np.ndarray, np.ndarray]:
        """RGB (uint8 HxWx3) and the OpenGL window-depth buffer (float32 HxW, 1.0 = nothing)."""
        p = self.p
        view = p.computeViewMatrix(list(map(float, eye)), list(map(float, target)), [0, 0, 1], physicsClientId=self.client)
        _, _, rgba, depth, _ = p.getCameraImage(
            self.width, self.height, view, self._proj_gl, renderer=p.ER_TINY_RENDERER, shadow=1,
            lightDirection=list(light.direction), lightColor=list(light.colour),
            lightAmbientCoeff=light.ambient, lightDiffuseCoeff=light.diffuse, lightSpecularCoeff=0.05,
            physicsClientId=self.client,
        )
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(self.height, self.width, 4)[..., :3].copy()
        d = np.asarray(depth, dtype=np.float32).reshape(self.height, self.width)
        # the cleared buffer reads 0.9999999, not 1.0: snap it (and anything at the far plane) to 1.0
        d[d >= FAR_SNAP] = 1.0
        return rgb, d
