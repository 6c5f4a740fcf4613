"""Writing reconstructions ``(N, H, W)`` in the formats people open: fastMRI-style ``.h5``, NIfTI, DICOM.

One entry point, :func:`write_images`, picks the format (:func:`output_format`):

* ``h5`` (default; any path not ending in ``.nii``/``.nii.gz``): dataset ``reconstruction`` as fastMRI's
  ``save_reconstructions`` writes it (:func:`fastrecon.data.fastmri.write_reconstruction`).
* ``nifti`` (``.nii`` or ``.nii.gz``, nibabel): float32 volume ``(H, W, N)`` with the affine of the
  geometry (RAS mm), units mm.
* ``dicom`` (asked for by name: the output is a folder): a series of MR Image Storage files, one per
  slice (``IM_0001.dcm`` ...), magnitude scaled to uint16 with ``RescaleSlope``/``RescaleIntercept``
  recorded, one ``SeriesInstanceUID``, ``InstanceNumber`` 1..N, and ``PixelSpacing``, ``SliceThickness``,
  ``ImagePositionPatient``, ``ImageOrientationPatient`` from the geometry.

Every format is written atomically: a file to a temporary file beside it then renamed, a DICOM series
to a temporary folder beside it then renamed. An existing output is replaced only with ``overwrite``;
an existing DICOM folder only when it holds nothing but ``.dcm`` files (a user's folder is never emptied).
nibabel and pydicom are imported only when their format is written.
"""

from __future__ import annotations

import datetime
import gzip
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastrecon._features import import_optional
from fastrecon._files import PathArg, atomic_folder, atomic_write, check_output, same_file
from fastrecon.data.geometry import ImageGeometry
from fastrecon.errors import InputError, InputTypeError, OutputExistsError

FORMATS = ("h5", "nifti", "dicom", "mrd")
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
_UINT16_MAX = 65535


def _is_nifti_name(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def _is_mrd_name(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".mrd") or name.endswith(".mrd.h5")


def output_format(out: PathArg, format: str | None = None) -> str:
    """The format of ``out``: ``format`` when given (checked against the suffix), else ``nifti`` for
    ``.nii``/``.nii.gz``, ``mrd`` (MRD images, from MRD raw input only) for ``.mrd``/``.mrd.h5`` and ``h5``
    for any other name. A DICOM series is only written when asked for."""
    path = Path(out)
    if format is None:
        if _is_nifti_name(path):
            return "nifti"
        return "mrd" if _is_mrd_name(path) else "h5"
    if format not in FORMATS:
        raise InputError(f"output format {format!r} is unknown; expected one of {', '.join(FORMATS)}.")
    lower = path.name.lower()
    if format == "nifti" and not _is_nifti_name(path):
        raise InputError(f"output {str(out)!r}: a NIfTI file's name ends in .nii or .nii.gz.")
    if format != "nifti" and _is_nifti_name(path):
        raise InputError(f"output {str(out)!r} ends in .nii/.nii.gz but the format asked for is {format}.")
    if format == "dicom" and lower.endswith(".h5"):
        raise InputError(
            f"output {str(out)!r}: a DICOM series is a folder; give a folder name, not an .h5 file."
        )
    return format


def suffix_for(format: str) -> str:
    """What folder mode appends to an input's stem: ``.h5``, ``.nii.gz``, or nothing (a DICOM folder)."""
    return {"h5": ".h5", "nifti": ".nii.gz", "dicom": "", "mrd": ".mrd.h5"}[format]


def check_images_output(
    out: PathArg, format: str, *, inputs: Iterable[PathArg] = (), overwrite: bool = False
) -> Path:
    """:func:`~fastrecon._files.check_output` for a file format; for ``dicom`` the same rules for a
    folder: never an input, not an existing file, an existing folder only with ``overwrite`` and only
    when it holds nothing but ``.dcm`` files."""
    if format != "dicom":
        return check_output(out, inputs=inputs, overwrite=overwrite)
    path = Path(out)
    for source in inputs:
        if same_file(path, source) or Path(source).resolve().is_relative_to(path.resolve()):
            raise OutputExistsError(
                f"output folder {str(path)!r} is or holds the input {str(source)!r}; refusing to write over an input."
            )
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise OutputExistsError(
            f"output {str(path)!r} exists and is not a folder; a DICOM series is written as a folder of files."
        )
    if path.is_dir():
        if not overwrite:
            raise OutputExistsError(
                f"output {str(path)!r} already exists; refusing to replace it. Pass --overwrite (overwrite=True) "
                "to replace it, or give another path."
            )
        other = next((p for p in sorted(path.rglob("*")) if not (p.is_file() and p.suffix == ".dcm")), None)
        if other is not None:
            raise OutputExistsError(
                f"output folder {str(path)!r} holds {str(other)!r}, which is not a DICOM file; only a folder "
                "of .dcm files (a previous series) is replaced. Give another path."
            )
    return path


def _as_images(images: Any) -> np.ndarray:
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    array = np.asarray(images)
    if np.iscomplexobj(array):
        raise InputTypeError("images are complex; write the magnitude (e.g. RSS), as fastMRI does.")
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or min(array.shape) == 0:
        raise InputError(f"images have shape {array.shape}; expected (N, H, W) or (H, W).")
    if not np.isfinite(array).all():
        raise InputError("images hold NaN or infinite values; refusing to write them.")
    return array.astype(np.float32, copy=False)


def write_images(
    out: PathArg,
    images: Any,
    geometry: ImageGeometry | None = None,
    attrs: dict[str, Any] | None = None,
    overwrite: bool = False,
    format: str | None = None,
) -> Path:
    """Write magnitude images ``(N, H, W)`` (or one ``(H, W)``) to ``out`` in ``format`` (default: from
    the suffix, see :func:`output_format`). ``geometry`` places them in space (default: 1 mm voxels,
    identity directions); ``attrs`` (model, source, ...) become HDF5 attributes, the NIfTI description
    and the DICOM series description. Returns ``out``.

    Raises:
        OutputExistsError: ``out`` exists and ``overwrite`` is false, or is not what the format writes.
        InputError / InputTypeError: images not real ``(N, H, W)`` or not finite; a bad format name.
        MissingDependencyError: nibabel / pydicom missing for their format.
    """
    fmt = output_format(out, format)
    if fmt == "mrd":
        raise InputError(
            f"output {str(out)!r}: MRD images need the acquisitions' headers; they are written by "
            "fastrecon.data.mrd_images.write_mrd_images (from MRD raw input), not from an image array."
        )
    array = _as_images(images)
    # A file name that is not UTF-8 (Linux allows any bytes) reaches here with surrogates, which HDF5 and
    # DICOM text cannot hold: keep such characters as backslash escapes.
    attrs = {
        key: value.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(value, str) else value
        for key, value in (attrs or {}).items()
    }
    if fmt == "h5":
        from fastrecon.data.fastmri import write_reconstruction

        if geometry is not None:
            attrs.setdefault("voxel_size_mm", list(geometry.voxel_size_mm))
        return write_reconstruction(Path(out), array, attrs=attrs, overwrite=overwrite)
    geometry = geometry if geometry is not None else ImageGeometry()
    if fmt == "nifti":
        return _write_nifti(Path(out), array, geometry, attrs, overwrite)
    return _write_dicom(Path(out), array, geometry, attrs, overwrite)


def _description(attrs: dict[str, Any]) -> str:
    model = attrs.get("model")
    return f"fastrecon {model}" if model else "fastrecon reconstruction"


def _write_nifti(
    out: Path, array: np.ndarray, geometry: ImageGeometry, attrs: dict[str, Any], overwrite: bool
) -> Path:
    nibabel = import_optional("nibabel")
    out = check_output(out, overwrite=overwrite)
    _check_nifti_slices(geometry, array.shape[0])
    affine = geometry.affine_ras(array.shape)  # type: ignore[arg-type]
    volume = np.ascontiguousarray(np.moveaxis(array, 0, -1))  # (H, W, N): i along H, j along W, k slices
    image = nibabel.Nifti1Image(volume, affine)
    code = 1 if geometry.positions is not None else 2  # scanner coordinates, or only aligned
    image.set_qform(affine, code=code)
    image.set_sform(affine, code=code)
    image.header.set_xyzt_units("mm")
    image.header["descrip"] = _description(attrs).encode("ascii", "replace")[:79]
    data = image.to_bytes()
    with atomic_write(out, overwrite=overwrite) as temp:
        if out.name.lower().endswith(".gz"):
            with open(temp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as handle:
                handle.write(data)
        else:
            temp.write_bytes(data)
    return out


def _off_grid_mm(geometry: ImageGeometry, num: int) -> float:
    """How far (mm) the farthest slice centre lies from ``first + n * step`` (0 without positions)."""
    if geometry.positions is None or num < 2:
        return 0.0
    positions = geometry.slice_centres(num)
    expected = positions[0] + np.arange(num)[:, None] * geometry.slice_step(num)[None, :]
    return float(np.abs(positions - expected).max())


def _check_nifti_slices(geometry: ImageGeometry, num: int) -> None:
    """A NIfTI volume places slice ``n`` at ``first + n * step``: refuse images whose positions are not so
    (MRD cine phases or repetitions that share a slice position, slices out of order), which the affine
    would put in the wrong places."""
    worst = _off_grid_mm(geometry, num)
    if worst > 0.01:
        raise InputError(
            f"the {num} images are not {num} evenly spaced slices (a slice centre lies {worst:.3g} mm from "
            "where a NIfTI volume would put it; e.g. cine phases or repetitions at one slice position); "
            "expected evenly spaced slices for NIfTI. Write a DICOM series (--format dicom), MRD images "
            "(.mrd.h5) or an .h5 instead."
        )


def _ds(value: float) -> str:
    """``value`` as a DICOM decimal string (at most 16 characters; read back with ``float``)."""
    from pydicom.valuerep import format_number_as_ds

    return str(format_number_as_ds(float(value)))


def _scaling(array: np.ndarray) -> tuple[float, float]:
    """``(slope, intercept)`` mapping uint16 0..65535 onto the data's range (0 included), one for the series."""
    low = min(0.0, float(array.min()))
    high = float(array.max())
    slope = (high - low) / _UINT16_MAX if high > low else 1.0
    # Rounded as the file records them, so that stored * slope + intercept is what a reader gets.
    return float(_ds(slope)), float(_ds(low))


def _previous_series(folder: Path) -> None:
    """Refuse to replace a folder that holds anything but ``.dcm`` files."""
    check_images_output(folder, "dicom", overwrite=True)


def _write_dicom(
    out: Path, array: np.ndarray, geometry: ImageGeometry, attrs: dict[str, Any], overwrite: bool
) -> Path:
    pydicom = import_optional("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    out = check_images_output(out, "dicom", overwrite=overwrite)
    num, height, width = array.shape
    slope, intercept = _scaling(array)
    stored = np.clip(np.rint((array - intercept) / slope), 0, _UINT16_MAX).astype(np.uint16)
    corners = geometry.corners(array.shape)  # type: ignore[arg-type]
    centres = geometry.slice_centres(num)
    row_dir, col_dir = np.asarray(geometry.phase_dir), np.asarray(geometry.read_dir)
    normal = np.cross(row_dir, col_dir)
    step = geometry.slice_step(num)
    # Written only when the slices are evenly spaced (not for cine phases or repetitions at one position).
    even = _off_grid_mm(geometry, num) <= 0.01
    now = datetime.datetime.now()
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    legacy = int(pydicom.__version__.split(".")[0]) < 3
    description = _description(attrs)[:64]

    with atomic_folder(out, overwrite=overwrite, check_old=_previous_series) as temp:
        for n in range(num):
            uid = generate_uid()
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = UID(MR_IMAGE_STORAGE)
            meta.MediaStorageSOPInstanceUID = uid
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = Dataset()
            ds.file_meta = meta
            ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: the source path and model name may be any text
            ds.SOPClassUID = UID(MR_IMAGE_STORAGE)
            ds.SOPInstanceUID = uid
            ds.StudyInstanceUID = study
            ds.SeriesInstanceUID = series
            ds.FrameOfReferenceUID = frame
            ds.Modality = "MR"
            ds.ImageType = ["DERIVED", "PRIMARY", "M"]
            ds.Manufacturer = "fastrecon"
            ds.SeriesDescription = description
            ds.ImageComments = str(attrs.get("source", ""))[:10240]
            ds.PatientName = ""
            ds.PatientID = ""
            ds.PatientBirthDate = ""
            ds.PatientSex = ""
            ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
            ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
            ds.StudyID = ""
            ds.AccessionNumber = ""
            ds.ReferringPhysicianName = ""
            ds.SeriesNumber = 1
            ds.Laterality = ""  # type 2C (paired body parts): unknown here
            ds.PatientPosition = (
                ""  # type 2C for MR without a Patient Orientation Code Sequence: unknown here
            )
            ds.InstanceNumber = n + 1
            ds.ScanningSequence = "RM"  # research mode: the sequence is not known here
            ds.SequenceVariant = "NONE"
            ds.ScanOptions = ""
            ds.MRAcquisitionType = "2D"
            ds.EchoTime = ""
            ds.RepetitionTime = ""
            ds.EchoTrainLength = ""
            ds.PositionReferenceIndicator = ""
            ds.PixelSpacing = [_ds(geometry.voxel_size_mm[0]), _ds(geometry.voxel_size_mm[1])]
            ds.SliceThickness = _ds(geometry.voxel_size_mm[2])
            if even:
                ds.SpacingBetweenSlices = _ds(float(np.linalg.norm(step)))
            ds.ImagePositionPatient = [_ds(float(v)) for v in corners[n]]
            ds.ImageOrientationPatient = [_ds(float(v)) for v in (*row_dir, *col_dir)]
            ds.SliceLocation = _ds(float(np.dot(centres[n], normal)))
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows = height
            ds.Columns = width
            ds.BitsAllocated = 16
            ds.BitsStored = 16
            ds.HighBit = 15
            ds.PixelRepresentation = 0
            ds.RescaleSlope = _ds(slope)
            ds.RescaleIntercept = _ds(intercept)
            ds.RescaleType = "US"
            high = float(array.max())
            ds.WindowCenter = _ds(high / 2)
            ds.WindowWidth = _ds(max(high, 1e-6))
            if high < 1:  # DICOM's default (LINEAR) window needs a width >= 1; reconstructions are often tiny
                ds.VOILUTFunction = "LINEAR_EXACT"
            ds.PixelData = stored[n].tobytes()
            path = temp / f"IM_{n + 1:04d}.dcm"
            if legacy:  # pydicom 2.x
                ds.is_little_endian, ds.is_implicit_VR = True, False
                ds.save_as(path, write_like_original=False)
            else:
                ds.save_as(path, enforce_file_format=True)
    return out
