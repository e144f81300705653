"""Writes a DICOM file again in another transfer syntax: the compressed twins an archive holds.

Real archives mix every syntax (CR/DX in JPEG Lossless, MR in JPEG 2000, old CT in big endian);
this makes such a folder from uncompressed files, for tests and benchmarks of the readers. pydicom
writes the native syntaxes, deflate, RLE and JPEG 2000; imagecodecs (libjpeg-turbo, CharLS) encodes
the JPEG family and JPEG-LS frame by frame. JPEG takes unsigned samples of limited depth (8 bits for
baseline, 12 for extended, 16 for lossless): the stored values are shifted (and for the lossy
processes scaled) into that range, and RescaleSlope/Intercept changed so that the modality values
(Hounsfield units, say) stay what they were, exactly for the lossless syntaxes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom import uid
from pydicom.encaps import encapsulate

SYNTAXES: dict[str, uid.UID] = {
    "implicit-le": uid.ImplicitVRLittleEndian,
    "explicit-le": uid.ExplicitVRLittleEndian,
    "explicit-be": uid.ExplicitVRBigEndian,
    "deflate": uid.DeflatedExplicitVRLittleEndian,
    "rle": uid.RLELossless,
    "jpeg-baseline": uid.JPEGBaseline8Bit,
    "jpeg-extended": uid.JPEGExtended12Bit,
    "jpeg-lossless": uid.JPEGLossless,
    "jpeg-lossless-sv1": uid.JPEGLosslessSV1,
    "jpeg-ls": uid.JPEGLSLossless,
    "jpeg-ls-near": uid.JPEGLSNearLossless,
    "j2k-lossless": uid.JPEG2000Lossless,
    "j2k": uid.JPEG2000,
}
LOSSY = {"jpeg-baseline", "jpeg-extended", "jpeg-ls-near", "j2k"}
# syntax -> (most bits per sample, imagecodecs encoder and its options)
_JPEG = {
    "jpeg-baseline": (8, "jpeg8_encode", {"level": 90}),
    "jpeg-extended": (12, "jpeg8_encode", {"level": 90, "bitspersample": 12}),
    "jpeg-lossless": (16, "jpeg8_encode", {"lossless": True, "predictor": 6}),  # process 14 allows predictors 1-7
    "jpeg-lossless-sv1": (16, "jpeg8_encode", {"lossless": True, "predictor": 1}),  # selection value 1
    "jpeg-ls": (16, "jpegls_encode", {"level": 0}),
    "jpeg-ls-near": (16, "jpegls_encode", {"level": 2}),  # NEAR = 2: every value within 2
}


def transcode(source: str | Path, target: str | Path, syntax: str) -> Path:
    """``source`` (any syntax pydicom decodes) written to ``target`` in ``syntax`` (see SYNTAXES)."""
    if syntax not in SYNTAXES:
        raise ValueError(f"unknown transfer syntax {syntax!r}; choose from {sorted(SYNTAXES)}")
    ds = pydicom.dcmread(source)
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.decompress()  # native pixels, explicit VR little endian
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if syntax in _JPEG:
        _encode_jpeg(ds, syntax)
    elif syntax in ("rle", "j2k-lossless", "j2k"):
        ds.compress(SYNTAXES[syntax], generate_instance_uid=False, **({"j2k_cr": [20]} if syntax == "j2k" else {}))
    elif syntax == "explicit-be" and ds.BitsAllocated > 8:
        ds.PixelData = np.frombuffer(ds.PixelData, f"<u{ds.BitsAllocated // 8}").byteswap().tobytes()
    ds.file_meta.TransferSyntaxUID = SYNTAXES[syntax]
    # dcmwrite, not save_as: only it re-encodes between little and big endian
    pydicom.dcmwrite(
        target, ds, implicit_vr=syntax == "implicit-le", little_endian=syntax != "explicit-be", enforce_file_format=True
    )
    return target


def _encode_jpeg(ds: pydicom.Dataset, syntax: str) -> None:
    try:
        import imagecodecs
    except ImportError as error:
        raise ImportError(
            "encoding the JPEG family needs imagecodecs: pip install imagecodecs (or medssl[test])"
        ) from error

    bits, encoder, options = _JPEG[syntax]
    colour = int(ds.get("SamplesPerPixel", 1)) == 3
    pixels = ds.pixel_array.reshape(int(ds.get("NumberOfFrames") or 1), ds.Rows, ds.Columns, *((3,) if colour else ()))
    if not colour:
        pixels = _unsigned(ds, pixels, bits, lossless=syntax not in LOSSY)
    encode = getattr(imagecodecs, encoder)
    ds.PixelData = encapsulate([encode(frame, **options) for frame in pixels])
    ds["PixelData"].VR = "OB"
    if colour and syntax == "jpeg-baseline":
        ds.PhotometricInterpretation = "YBR_FULL_422"  # libjpeg-turbo's YCbCr, as DICOM names it
    if colour:
        ds.PlanarConfiguration = 0
    if syntax in LOSSY:
        ds.LossyImageCompression = "01"


def _unsigned(ds: pydicom.Dataset, pixels: np.ndarray, bits: int, lossless: bool) -> np.ndarray:
    """Stored values moved into ``bits`` unsigned bits, the rescale kept in modality units: a
    shift when lossless (exact), a shift and a scale to the full depth when lossy."""
    values = pixels.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    step = 1.0 if lossless else max(high - low, 1.0) / (2**bits - 1)
    if (high - low) / step > 2**bits - 1:
        raise ValueError(f"values span {high - low:.0f}, more than {bits} bits hold without loss")
    stored = np.round((values - low) / step).astype(np.uint8 if bits == 8 else np.uint16)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = (8 if bits == 8 else 16), bits, bits - 1, 0
    for place in _rescale_places(ds):  # modality = stored * slope + intercept, wherever it is given
        slope, intercept = float(place.get("RescaleSlope", 1)), float(place.get("RescaleIntercept", 0))
        place.RescaleSlope, place.RescaleIntercept = f"{slope * step:.10g}", f"{intercept + slope * low:.10g}"
    for stale in ("WindowCenter", "WindowWidth", "SmallestImagePixelValue", "LargestImagePixelValue"):
        if stale in ds:  # in the old stored units
            del ds[stale]
    return stored


def _rescale_places(ds: pydicom.Dataset) -> list[pydicom.Dataset]:
    """The dataset itself and, in enhanced files, each functional group's pixel value transformation."""
    places = [ds]
    for sequence in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for group in ds.get(sequence) or []:
            places += list(group.get("PixelValueTransformationSequence") or [])
    return places
