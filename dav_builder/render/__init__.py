"""dav-render: a synthetic capture engine on pybullet's TinyRenderer (see docs/renderer.md)."""
