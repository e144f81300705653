"""Every common transfer syntax decodes: twins of real DICOM files, written in each syntax, read
back to the same image (exactly for the lossless ones)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom import uid
from pydicom.encaps import encapsulate

from medssl.data.readers import UnreadableImageError, read_image
from medssl.data.transcode import LOSSY, SYNTAXES, transcode

SOURCES = {
    "CT, signed 16-bit, Hounsfield units": "dicom/pydicom/CT_small.dcm",
    "MR": "dicom/pydicom/MR_small.dcm",
    "enhanced MR, 10 frames": "dicom/pydicom_data/emri_small.dcm",
    "ultrasound, RGB": "dicom/pydicom_data/US1_UNCR.dcm",
}


@pytest.mark.parametrize("syntax", sorted(SYNTAXES))
@pytest.mark.parametrize("source", sorted(SOURCES))
def test_a_twin_in_each_syntax_reads_as_the_original(shared_data, tmp_path, source, syntax):
    if syntax == "jpeg-extended" and "RGB" in source:
        pytest.skip("the 12-bit JPEG process is for greyscale; colour JPEG is baseline")
    original = read_image(shared_data / SOURCES[source])
    twin = transcode(shared_data / SOURCES[source], tmp_path / f"{syntax}.dcm", syntax)
    assert pydicom.dcmread(twin, stop_before_pixels=True).file_meta.TransferSyntaxUID == SYNTAXES[syntax]
    image = read_image(twin)
    assert image.array.shape == original.array.shape and image.spacing == pytest.approx(original.spacing)
    assert image.modality == original.modality
    span = original.array.max() - original.array.min()
    error = np.abs(image.array - original.array) / span
    if syntax in LOSSY:
        assert error.mean() < 0.06, error.mean()  # JPEG 2000 at 20:1 is the coarsest
    else:
        assert error.max() == 0


def test_an_undecodable_syntax_is_named_with_what_decodes_it(shared_data, tmp_path):
    ds = pydicom.dcmread(shared_data / SOURCES["MR"])
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + bytes(60)])  # an MPEG-2 video stream, as far as the header says
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = uid.MPEG2MPML
    ds.save_as(tmp_path / "video.dcm", enforce_file_format=True)
    with pytest.raises(UnreadableImageError) as error:
        read_image(tmp_path / "video.dcm")
    assert (
        "MPEG2" in error.value.reason and str(uid.MPEG2MPML) in error.value.reason and "pylibjpeg" in error.value.reason
    )
