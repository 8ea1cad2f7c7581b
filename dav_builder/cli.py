"""Console entry points.

Each command lives beside the code it drives and only maps options onto that code's typed
configs; this module imports them lazily so ``dav-filter --help`` does not pay for torch or Ray.

- ``dav-build``  -> :mod:`dav_builder.pipeline.cli`
- ``dav-filter`` -> :mod:`dav_builder.filters.cli`
- ``dav-train``  -> :mod:`dav_builder.model.cli`
- ``dav-render`` -> :mod:`dav_builder.render.cli`
"""

from __future__ import annotations


def build_main() -> None:
    from dav_builder.pipeline.cli import main

    main()


def filter_main() -> None:
    from dav_builder.filters.cli import main

    main()


def train_main() -> None:
    from dav_builder.model.cli import main

    main()


def render_main() -> None:
    from dav_builder.render.cli import main

    main()
