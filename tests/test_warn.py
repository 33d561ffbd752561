"""Warnings as one clean line each, recorded for the metadata."""

from __future__ import annotations

import logging
import warnings

import pytest

from pipeline import warn
from pipeline.errors import KmsegWarning


def test_echo_prints_one_clean_line_per_distinct_warning(capsys):
    with warn.capture(echo=True, forward=False) as record:
        for _ in range(3):
            warnings.warn("the fit did not\n converge", RuntimeWarning, stacklevel=1)
        logging.getLogger("tifffile").warning("<tifffile.TiffPage 0> invalid tag")
        assert warn.recorded() == record.lines
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "kmseg: warning: RuntimeWarning: the fit did not converge",
        "kmseg: warning: tifffile: <tifffile.TiffPage 0> invalid tag",
    ]
    assert warn.recorded() == []
    assert warnings.showwarning is not None and logging.getLogger("tifffile").propagate


def test_forward_keeps_the_callers_view_and_error_filters():
    with pytest.warns(UserWarning, match="seen"), warn.capture(forward=True) as record:
        warnings.warn("seen outside", UserWarning, stacklevel=1)
    assert record.lines == ["UserWarning: seen outside"]
    # The test-suite's filter turns KmsegWarning into an error: capture keeps filters.
    with pytest.raises(KmsegWarning), warn.capture(forward=True):
        warnings.warn("a.tif: something", KmsegWarning, stacklevel=1)


def test_kmseg_warnings_are_attributed_to_the_input_they_name():
    lines = ["a.tif: gap between slices", "b.tif: odd", "PerformanceWarning: slow"]
    assert warn.for_input(lines, "a.tif", ["a.tif", "b.tif"]) == [
        "a.tif: gap between slices", "PerformanceWarning: slow"
    ]
    assert warn.format_warning("x.png: odd\nthing", KmsegWarning) == "x.png: odd thing"
