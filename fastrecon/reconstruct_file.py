"""Reconstruct one fastMRI ``.h5``, CMRxRecon ``.mat`` or MRD raw file into a fastMRI-style ``.h5``, NIfTI,
DICOM or (MRD input) MRD images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fastrecon.data.cmrxrecon import read_cmrxrecon
from fastrecon.data.fastmri import read_fastmri
from fastrecon.data.geometry import ImageGeometry, fastmri_geometry
from fastrecon.data.outputs import check_images_output, output_format, write_images
from fastrecon.errors import DataFormatError, InputError
from fastrecon.physics.masks import create_mask_for_mask_type, seed_from_name


def reconstruct_file(
    recon: Any,
    path: str | Path,
    out: str | Path,
    *,
    acceleration: float | None = None,
    center_fraction: float = 0.08,
    mask_type: str = "equispaced_fraction",
    key: str | None = None,
    overwrite: bool = False,
    format: str | None = None,
) -> Path:
    """Read ``path``, undersample it when ``acceleration`` is given (mask seeded by the file name, as
    fastMRI does), otherwise use the file's own mask or zero pattern; write ``reconstruction (N, H, W)``.

    ``out`` is checked before anything is read: it may never be the input (also through links), and
    an existing ``out`` is replaced only with ``overwrite=True``
    (:class:`~fastrecon.errors.OutputExistsError`). The output is written to a temporary file and
    renamed, so a failure never leaves half a file.

    ``format`` is ``h5`` (fastMRI-style), ``nifti``, ``dicom`` (a folder) or, for MRD raw input,
    ``mrd`` (MRD images); default from ``out``'s suffix (see :func:`fastrecon.data.outputs.output_format`). Geometry comes from the header where
    the file has one.
    """
    path = Path(path)
    fmt = output_format(out, format)
    # --- MRD raw data (recognised by content; usually plain .h5): fastrecon.reconstruct_mrd ---
    from fastrecon.data.mrd import is_mrd_file

    if is_mrd_file(path):
        from fastrecon.reconstruct_mrd import reconstruct_mrd_file

        return reconstruct_mrd_file(
            recon, path, out, acceleration=acceleration, center_fraction=center_fraction,
            mask_type=mask_type, overwrite=overwrite, format=fmt,
        )  # fmt: skip
    if fmt == "mrd":
        raise InputError(
            f"output {str(out)!r}: MRD images are written from MRD raw input only; {str(path)!r} is not an MRD "
            "file. Give an .h5, .nii.gz or --format dicom output."
        )
    # --- end MRD ---
    out = check_images_output(out, fmt, inputs=[path], overwrite=overwrite)
    mask = None
    geometry: ImageGeometry | None = None
    if path.suffix == ".h5":
        volume = read_fastmri(path)
        kspace = torch.from_numpy(volume.kspace)
        if volume.mask is not None:
            mask = torch.from_numpy(volume.mask)
        geometry = fastmri_geometry(path)
    elif path.suffix == ".mat":
        kspace = torch.from_numpy(read_cmrxrecon(path, key).kspace)
    else:
        raise DataFormatError(
            f"{str(path)!r}: expected a fastMRI .h5 or a CMRxRecon .mat file (suffix {path.suffix!r})."
        )
    if acceleration is not None:
        func = create_mask_for_mask_type(mask_type, [center_fraction], [acceleration])
        mask = func(kspace.shape[-1], seed=seed_from_name(path.name))
    image = recon.reconstruct(kspace, mask)
    attrs = {"model": recon.config.name, "weights": str(recon.weights_path), "source": str(path)}
    if acceleration is not None:
        attrs.update(acceleration=acceleration, center_fraction=center_fraction, mask_type=mask_type)
    # Checked again at the write: the input must not have been replaced by the output meanwhile.
    check_images_output(out, fmt, inputs=[path], overwrite=overwrite)
    return write_images(out, image, geometry, attrs=attrs, overwrite=overwrite, format=fmt)
