"""Camera trajectories as pure functions of time: smooth, with realistic speeds.

Each returns ``(eye, target)`` in world metres (z up) for time ``t`` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Typical speeds in metres per second.
SPEEDS = {"walk": 1.4, "drive": 9.0, "orbit": 2.0, "fly": 5.0}
KINDS = tuple(SPEEDS)


@dataclass(frozen=True)
class Trajectory:
    kind: str
    origin: tuple[float, float, float]
    heading: float
    """Direction of travel, radians in the xy plane."""
    speed: float
    height: float
    radius: float = 8.0
    wobble: float = 0.0
    """Amplitude of the gentle sideways sway of a walker or a flying camera (metres)."""
    turn_amp: float = 0.15
    """How far (radians) the camera looks left and right of its heading over time."""
    turn_rate: float = 0.07
    """How often (Hz) it does: a fast camera pans quickly."""
    pitch: float | None = None
    """Downward slope of the view (z of the unit-ish look vector; a drone looks down); None = the
    kind's own (slightly down)."""

    def pose(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        o = np.array(self.origin, dtype=np.float64)
        if self.kind == "orbit":
            ang = self.heading + self.speed * t / self.radius
            eye = o + np.array([self.radius * np.cos(ang), self.radius * np.sin(ang), self.height])
            return eye, o + np.array([0.0, 0.0, 0.8])
        d = np.array([np.cos(self.heading), np.sin(self.heading), 0.0])
        side = np.array([-d[1], d[0], 0.0])
        sway = self.wobble * np.sin(2 * np.pi * 0.4 * t)
        bob = 0.03 * np.sin(2 * np.pi * 1.8 * t) if self.kind == "walk" else 0.0
        climb = 0.6 * np.sin(2 * np.pi * 0.05 * t) if self.kind == "fly" else 0.0
        eye = o + d * self.speed * t + side * sway + np.array([0, 0, self.height + bob + climb])
        turn = self.turn_amp * np.sin(2 * np.pi * self.turn_rate * t)  # look left and right over time
        down = self.pitch if self.pitch is not None else (-0.08 if self.kind == "fly" else -0.02)
        look = np.array([np.cos(self.heading + turn), np.sin(self.heading + turn), down])
        return eye, eye + look * 10.0


def make_trajectory(kind: str, origin, heading: float, rng: np.random.Generator) -> Trajectory:
    """A trajectory of ``kind`` with speed and height drawn around realistic values."""
    speed = SPEEDS[kind] * rng.uniform(0.8, 1.2)
    height = {"walk": 1.65, "drive": 1.3, "orbit": 2.5, "fly": 6.0}[kind] * rng.uniform(0.9, 1.1)
    wobble = {"walk": 0.05, "fly": 0.5}.get(kind, 0.0)
    return Trajectory(kind, tuple(float(v) for v in origin), heading, speed, height, rng.uniform(6, 10), wobble)


def cam_to_world(eye: np.ndarray, target: np.ndarray, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """4x4 camera-to-world pose in OpenCV camera axes (x right, y down, z forward)."""
    f = np.asarray(target, float) - np.asarray(eye, float)
    f /= np.linalg.norm(f)
    r = np.cross(f, np.asarray(up, float))
    r /= np.linalg.norm(r)
    d = np.cross(f, r)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = r, d, f, eye
    return m
