"""Regression cases for the receive/assemble checks (found by the fuzzer or the hostile corpus)."""

from __future__ import annotations

import pytest
from pydicom import Dataset
from pydicom.dataelem import DataElement
from pydicom.dataset import FileMetaDataset

from gate.assemble.validate import check_pixel_data_length
from gate.errors import InvalidObjectError


def _image(rows: int = 4, cols: int = 4) -> Dataset:
    ds = Dataset()
    ds.SOPInstanceUID = "1.2.3.4"
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.SamplesPerPixel = rows, cols, 16, 1
    ds.PixelData = b"\0" * (rows * cols * 2)
    ds.file_meta = FileMetaDataset()
    return ds


def test_transfer_syntax_under_a_foreign_vr_is_read_as_text() -> None:
    # Found by atheris: a file meta whose Transfer Syntax UID element was re-typed as PN.
    ds = _image()
    ds.file_meta[0x00020010] = DataElement(0x00020010, "PN", "1.2.840.10008.1.2.1")
    check_pixel_data_length(ds)  # native, complete: no error


def test_transfer_syntax_that_is_no_transfer_syntax_is_invalid() -> None:
    ds = _image()
    ds.file_meta[0x00020010] = DataElement(0x00020010, "PN", "1.2.3.4.5")
    with pytest.raises(InvalidObjectError, match="not a transfer syntax"):
        check_pixel_data_length(ds)


def test_short_native_pixel_data_is_truncated() -> None:
    ds = _image()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds.PixelData = ds.PixelData[:-2]
    with pytest.raises(InvalidObjectError, match="truncated"):
        check_pixel_data_length(ds)
