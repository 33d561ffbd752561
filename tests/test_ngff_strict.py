"""Every kind of output passes strict OME-NGFF 0.5 validation.

Two independent validators: the ``ome-zarr-models`` pydantic models (which also check the arrays
against the metadata: dimension names, number of levels, label dtypes) and the spec's own strict
JSON schemas as ngff-zarr bundles them (``validate(..., strict=True)``), which require the
``multiscales`` ``name``, ``type`` and ``metadata`` and the ``image-label`` ``colors``.
"""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from pipeline import segment

ngff_zarr = pytest.importorskip("ngff_zarr")


def _check_image(
    group: zarr.Group, *, axes: list[str], levels: int, labels: tuple[str, ...] = ("clusters",)
) -> None:
    from ome_zarr_models.v05 import Image, ImageLabel, Labels

    image_attrs = group.attrs.asdict()
    ngff_zarr.validate(image_attrs, version="0.5", model="image", strict=True)
    image = Image.from_zarr(group)
    [multiscale] = image.attributes.ome.multiscales
    assert [a.name for a in multiscale.axes] == axes
    assert [d.path for d in multiscale.datasets] == [str(n) for n in range(levels)]
    assert multiscale.type == "mean"
    assert multiscale.metadata["method"] == "pipeline.io.pyramid.downsample_image"

    Labels.from_zarr(group["labels"])
    assert group["labels"].attrs["ome"]["labels"] == list(labels)
    label_group = group["labels/clusters"]
    label_attrs = label_group.attrs.asdict()
    ngff_zarr.validate(label_attrs, version="0.5", model="label", strict=True)
    ngff_zarr.validate(label_attrs, version="0.5", model="image", strict=True)
    label = ImageLabel.from_zarr(label_group)
    [label_multiscale] = label.attributes.ome.multiscales
    assert [a.name for a in label_multiscale.axes] == [a for a in axes if a != "c"]
    assert label_multiscale.type == "nearest"
    assert len(label_multiscale.datasets) == levels
    assert label.attributes.ome.image_label.source.image == "../../"


def test_rgb_output_is_strict_ngff(photos, tmp_path):
    out = str(tmp_path / "rgb.zarr")
    segment(photos["astronaut"], out, k=3, quiet=True, pyramid_levels=2)
    _check_image(zarr.open_group(out, mode="r"), axes=["c", "y", "x"], levels=2)


def test_grey_output_is_strict_ngff(photos, tmp_path):
    grey = photos["coffee"][..., 0]
    out = str(tmp_path / "grey.zarr")
    segment(grey, out, k=3, quiet=True, pyramid_levels=2)
    _check_image(zarr.open_group(out, mode="r"), axes=["y", "x"], levels=2)


def test_volume_output_is_strict_ngff(tmp_path, rng):
    import nibabel

    volume = rng.normal(0, 1, size=(96, 80, 6)).astype(np.float32)  # x, y, z
    path = tmp_path / "ct.nii.gz"
    nibabel.save(nibabel.Nifti1Image(volume, np.diag([0.5, 0.5, 2.0, 1])), path)
    out = str(tmp_path / "volume.zarr")
    segment(str(path), out, k=2, quiet=True)
    group = zarr.open_group(out, mode="r")
    _check_image(group, axes=["z", "y", "x"], levels=1)
    [axis_z, *_] = group.attrs["ome"]["multiscales"][0]["axes"]
    assert axis_z == {"name": "z", "type": "space", "unit": "millimeter"}


def test_several_inputs_are_each_strict_ngff(photos, tmp_path):
    from PIL import Image as PILImage

    (tmp_path / "in").mkdir()  # the output may not lie in a glob's folder
    for name in ("a", "b"):
        PILImage.fromarray(photos["chelsea"]).save(tmp_path / "in" / f"{name}.png")
    out = str(tmp_path / "many.zarr")
    segment(str(tmp_path / "in" / "*.png"), out, k=2, quiet=True, pyramid_levels=3)
    root = zarr.open_group(out, mode="r")
    for name in ("a", "b"):
        _check_image(root[name], axes=["c", "y", "x"], levels=3)


def test_a_missing_type_fails_the_strict_schema(photos, tmp_path):
    """The strict check can fail: without ``type`` the spec's strict schema refuses."""
    import jsonschema

    out = str(tmp_path / "rgb.zarr")
    segment(photos["astronaut"], out, k=2, quiet=True, pyramid_levels=1)
    attrs = zarr.open_group(out, mode="r").attrs.asdict()
    del attrs["ome"]["multiscales"][0]["type"]
    with pytest.raises(jsonschema.ValidationError, match="'type' is a required property"):
        ngff_zarr.validate(attrs, version="0.5", model="image", strict=True)


def test_a_second_label_image_is_listed_and_strict(tmp_path, rng):
    """``write_label_pyramid(name=...)`` adds a label image (e.g. a mask) beside the clusters."""
    import dask.array as da

    from pipeline.io.ngff import SpatialMeta, write_image_pyramid, write_label_pyramid

    root = zarr.open_group(str(tmp_path / "two.zarr"), mode="w")
    spatial = SpatialMeta("yx", (1.0, 1.0))
    image = da.from_array(rng.integers(0, 255, size=(3, 256, 200), dtype=np.uint8))
    labels = da.from_array(rng.integers(0, 3, size=(256, 200), dtype=np.uint8))
    tasks = write_image_pyramid(root, image, spatial, 2, name="two")
    colours = [{"label-value": 0, "rgba": [0, 0, 0, 0]}, {"label-value": 1, "rgba": [9, 9, 9, 255]}]
    tasks += write_label_pyramid(root, labels, spatial, 2, colours)
    mask = (labels > 0).astype(np.uint8)
    with pytest.raises(TypeError, match="integers"):
        write_label_pyramid(root, labels > 0, spatial, 2, colours, name="mask")
    tasks += write_label_pyramid(root, mask, spatial, 2, colours, name="mask")
    da.compute(*tasks)
    _check_image(zarr.open_group(str(tmp_path / "two.zarr"), mode="r"), axes=["c", "y", "x"],
                 levels=2, labels=("clusters", "mask"))
    mask_attrs = root["labels/mask"].attrs.asdict()
    ngff_zarr.validate(mask_attrs, version="0.5", model="label", strict=True)
    np.testing.assert_array_equal(root["labels/mask/1"][...], mask.compute()[::2, ::2])


def test_nodes_of_many_images_are_created_at_once(tmp_path, rng):
    """``create_nodes`` takes the nodes of several images in any order: parents are created
    before children, the root's attributes are merged, and every image passes the models."""
    import random

    import dask.array as da
    from ome_zarr_models.v05 import Image, ImageLabel

    from pipeline.io.ngff import (
        Node,
        SpatialMeta,
        create_nodes,
        image_pyramid_nodes,
        label_pyramid_nodes,
        labels_group_node,
    )

    root = zarr.open_group(str(tmp_path / "many.zarr"), mode="w")
    root.attrs["kept"] = 1
    spatial = SpatialMeta("yx", (0.5, 0.5), "micrometer")
    colours = [{"label-value": 0, "rgba": [0, 0, 0, 0]}, {"label-value": 1, "rgba": [9, 9, 9, 255]}]
    truth = {}
    nodes = [Node("", {"added": 2}, update=True)]
    for name in ("a", "b", "c"):
        image = rng.integers(0, 255, size=(3, 40, 30), dtype=np.uint8)
        labels = rng.integers(0, 2, size=(40, 30), dtype=np.uint8)
        truth[name] = (image, labels)
        nodes += image_pyramid_nodes(name, da.from_array(image), spatial, 2, name=name,
                                     attributes={"mine": name})
        nodes.append(labels_group_node(name, ["clusters"]))
        nodes += label_pyramid_nodes(name, da.from_array(labels), spatial, 2, colours)
    random.Random(0).shuffle(nodes)
    da.compute(*create_nodes(root, nodes))
    assert dict(root.attrs) == {"kept": 1, "added": 2}
    for name, (image, labels) in truth.items():
        group = zarr.open_group(str(tmp_path / "many.zarr"), mode="r")[name]
        assert group.attrs["mine"] == name
        Image.from_zarr(group)
        ImageLabel.from_zarr(group["labels/clusters"])
        np.testing.assert_array_equal(group["0"][...], image)
        np.testing.assert_array_equal(group["labels/clusters/0"][...], labels)
        np.testing.assert_array_equal(group["labels/clusters/1"][...], labels[::2, ::2])
