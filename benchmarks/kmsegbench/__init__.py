"""kmseg's benchmark package: kmseg against the usual ways of running K-Means on an image.

``python benchmarks/bench.py [flags]`` is the entry point (see benchmarks/README.md). Modules,
one job each:

* :mod:`.inputs`: the benchmark inputs, generated once under the data folder and reused while
  their ``.complete`` marker exists (photos, tiled RGB Zarr images, volumes, 16-bit, multichannel,
  float and 32-bit integer images, a real 16-bit image shipped with nibabel, a folder of many
  photos).
* :mod:`.measure`: what the script measures itself, alike for every method: features, mse over
  every pixel, peak memory (own ``VmHWM``, or sampled RSS of a process tree), read and write
  floors.
* :mod:`.methods`: the K-Means methods compared (kmseg in a subprocess, scikit-learn, dask-ml,
  faiss, the 1,000-pixel sample method).
* :mod:`.many`: the many-images benchmark (issue 8): ``kmseg segment FOLDER`` against the
  seed-method loop.
* :mod:`.startup`: start-up costs (issue 9): ``--version``, ``--help``, a small whole job,
  numba's first compile.
* :mod:`.report`: markdown tables, ratios and the targets.
* :mod:`.cli`: flags and the run.
"""
