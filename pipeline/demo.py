"""``kmseg demo``: segment a real photo bundled with scikit-image."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from pipeline.api import run
from pipeline.config import build_config
from pipeline.errors import OutputError
from pipeline.outputs import output_status
from pipeline.plan import SegmentationResult
from pipeline.samples import resolve

log = logging.getLogger(__name__)

#: The bundled photo the demo segments.
DEMO_SAMPLE = "sample:astronaut"


def run_demo(folder: str = "kmseg-demo", **options: Any) -> SegmentationResult:
    """Segment scikit-image's astronaut photo (a PNG file) into ``folder``/astronaut.zarr.

    The photo goes through the same reader as any user file. Running the demo again replaces
    its own earlier output (a kmseg output of the same photo); anything else at that path is
    refused.

    Parameters
    ----------
    folder : str
        Folder for the output; created if missing.
    **options
        Config keys (``k``, ``quiet``, ...).

    Raises
    ------
    OutputError
        ``folder`` exists and is not a folder, or ``folder``/astronaut.zarr exists and is not
        an earlier demo output.
    """
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise OutputError(
            f"{folder}: exists and is not a folder; give a folder (kmseg demo FOLDER)"
        )
    image_path = resolve(DEMO_SAMPLE)
    output = os.path.join(folder, "astronaut.zarr")
    again = is_earlier_demo(output, image_path)
    if os.path.exists(output) and not again and output_status(output) != "incomplete":
        raise OutputError(
            f"{output}: exists and is not an earlier kmseg demo output; "
            "give another folder (kmseg demo FOLDER)"
        )
    config = build_config({**options, "inputs": [image_path], "output": output,
                           "overwrite": again})
    os.makedirs(folder, exist_ok=True)
    if again:
        log.info("replacing the earlier demo output %s", output)
    [result] = run(config)
    log.info(
        "segmented %s into k=%d clusters: recoloured image at %s/0, labels at "
        "%s/labels/clusters/0; inspect it with: kmseg info %s",
        image_path, result.k, output, output, output,
    )
    return result


def is_earlier_demo(output: str, image_path: str) -> bool:
    """True if ``output`` is a kmseg output store whose input was the demo photo."""
    try:
        with open(os.path.join(output, "zarr.json"), "rb") as fh:
            meta = json.load(fh)["attributes"]["kmseg"]
        recorded = meta["input"]["path"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return isinstance(recorded, str) and os.path.basename(recorded) == os.path.basename(image_path)
