"""The output validates as OME-NGFF 0.5 and reads back with ome-zarr."""

from __future__ import annotations

import numpy as np
import zarr

from pipeline import segment


def test_output_passes_ome_zarr_models_and_reads_with_ome_zarr(photos, tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader
    from ome_zarr_models.v05 import Image, ImageLabel, Labels

    out = str(tmp_path / "out.zarr")
    segment(photos["astronaut"], out, k=4, quiet=True, chunks=[100, 120], pyramid_levels=4)
    group = zarr.open_group(out, mode="r")
    image = Image.from_zarr(group)
    datasets = image.attributes.ome.multiscales[0].datasets
    assert [d.path for d in datasets] == ["0", "1", "2", "3"]
    Labels.from_zarr(group["labels"])
    label = ImageLabel.from_zarr(group["labels/clusters"])
    colours = label.attributes.ome.image_label.colors
    assert [c.label_value for c in colours] == [0, 1, 2, 3, 4]

    nodes = list(Reader(parse_url(out))())
    data = nodes[0].data
    assert [tuple(level.shape) for level in data] == [
        (3, 512, 512),
        (3, 256, 256),
        (3, 128, 128),
        (3, 64, 64),
    ]
    label_nodes = [n for n in nodes if any(type(s).__name__ == "Label" for s in n.specs)]
    assert label_nodes and tuple(label_nodes[0].data[0].shape) == (512, 512)


def test_chunks_are_aligned_and_compressed(photos, tmp_path):
    out = str(tmp_path / "out.zarr")
    segment(photos["coffee"], out, k=3, quiet=True, chunks=[128, 160])
    group = zarr.open_group(out, mode="r")
    assert group["0"].chunks == (3, 128, 160)
    assert group["labels/clusters/0"].chunks == (128, 160)
    assert any("zstd" in type(c).__name__.lower() for c in group["0"].compressors)


def test_pyramid_levels_downsample(photos, tmp_path):
    out = str(tmp_path / "out.zarr")
    segment(photos["coffee"], out, k=3, quiet=True, pyramid_levels=2)
    group = zarr.open_group(out, mode="r")
    full = np.moveaxis(group["0"][...], 0, -1).astype(float)
    half = np.moveaxis(group["1"][...], 0, -1).astype(float)
    expected = full[:400, :600].reshape(200, 2, 300, 2, 3).mean(axis=(1, 3))
    np.testing.assert_array_equal(half, np.floor(expected + 0.5))  # integers round half up
    labels = group["labels/clusters/0"][...]
    np.testing.assert_array_equal(group["labels/clusters/1"][...], labels[::2, ::2])


def test_spacing_goes_into_scale():
    from pipeline.io.ngff import IMAGE_DOWNSAMPLING, SpatialMeta, multiscale

    spatial = SpatialMeta("zyx", (2.5, 0.5, 0.5), "micrometer")
    meta = multiscale("x", spatial, 2, False, IMAGE_DOWNSAMPLING)
    assert list(meta.datasets[1].coordinateTransformations[0].scale) == [2.5, 1.0, 1.0]
    assert meta.axes[0].model_dump(exclude_none=True) == {
        "name": "z",
        "type": "space",
        "unit": "micrometer",
    }


def test_mean_2x2_against_float_reference(rng):
    import dask.array as da

    from pipeline.io.pyramid import downsample_image

    for dtype in (np.uint8, np.uint16, np.int16):
        info = np.iinfo(dtype)
        image = rng.integers(info.min, info.max, size=(3, 37, 51), endpoint=True).astype(dtype)
        got = downsample_image(da.from_array(image, chunks=(3, 9, 13))).compute()
        expected = image[:, :36, :50].astype(float).reshape(3, 18, 2, 25, 2).mean(axis=(2, 4))
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, np.floor(expected + 0.5).astype(dtype))
    image = rng.random((8, 6)).astype(np.float32)
    image[:2, :2] = np.nan
    image[2, 2] = np.nan
    got = downsample_image(da.from_array(image, chunks=(3, 5))).compute()
    assert np.isnan(got[0, 0])
    np.testing.assert_allclose(got[1, 1], np.nanmean(image[2:4, 2:4]), rtol=1e-6)


def test_ngff_attributes_are_held_back():
    from pipeline.io.ngff import Node, hold_back_ome

    nodes = [Node("", {"kmseg": {"status": "incomplete"}, "ome": {"multiscales": []}},
                  update=True),
             Node("labels", {"ome": {"labels": ["clusters"]}}),
             Node("0", {}, array={"shape": (2, 2)})]
    created, ome = hold_back_ome(nodes)
    assert [n.attributes for n in created] == [{"kmseg": {"status": "incomplete"}}, {}, {}]
    assert [n.array for n in created] == [None, None, {"shape": (2, 2)}]
    assert [(n.path, n.attributes, n.update) for n in ome] == [
        ("", {"ome": {"multiscales": []}}, True), ("labels", {"ome": {"labels": ["clusters"]}},
                                                   True)]
