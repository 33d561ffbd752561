"""``kmseg demo``: segment a real photo bundled with scikit-image."""

from __future__ import annotations

import os

from pipeline.api import run
from pipeline.config import build_config
from pipeline.samples import resolve


def run_demo(
    folder: str = "kmseg-demo", *, k: int = 4, overwrite: bool = False, quiet: bool = False
) -> str:
    """Segment scikit-image's astronaut photo (a PNG file) into ``folder``; return the output.

    The photo goes through the same reader as any user file.
    """
    os.makedirs(folder, exist_ok=True)
    image_path = resolve("sample:astronaut")
    output = os.path.join(folder, "astronaut.zarr")
    config = build_config(
        {"inputs": [image_path], "output": output, "k": k, "overwrite": overwrite, "quiet": quiet}
    )
    [result] = run(config)
    print(f"kmseg demo: segmented {image_path} into k={k} clusters (mse {result.mse:.5f}).")
    print(
        f"kmseg demo: wrote {output} (recoloured image at {output}/0, labels at "
        f"{output}/labels/clusters/0). Inspect it with: kmseg info {output}"
    )
    return output
