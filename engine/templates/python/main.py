"""The __GLOAM_NAME__ function.

``gloam up`` prepares it (a virtualenv with the ``gloam`` package) and serves it; then
``gloam invoke __GLOAM_NAME__ --data World`` answers ``Hello, World!``.
"""

import gloam


def greet(data: bytes) -> bytes:
    """Return what __GLOAM_NAME__ answers for ``data``."""
    return b"Hello, " + (data or b"World") + b"!"


def handle(ctx: gloam.Context, data: bytes) -> bytes:
    """Serve one call (``ctx.invoke_sync("Other", data)`` calls another function)."""
    return greet(data)


if __name__ == "__main__":
    # Serves the function named by GLOAM_FUNCTION (set by `gloam up`) until the engine stops.
    gloam.serve({"__GLOAM_NAME__": handle})
