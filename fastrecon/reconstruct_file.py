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
from fastrecon.metrics import center_crop
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
    crop: bool = True,
    num_low_frequencies: int | None = None,
    coil_compress: bool = False,
) -> Path:
    """Read ``path``, undersample it when ``acceleration`` is given (mask seeded by the file name, as
    fastMRI does), otherwise use the file's own mask or zero pattern; write ``reconstruction (N, H, W)``.

    fastMRI files follow fastMRI's own flow (``VarNetDataTransform`` and
    ``run_pretrained_varnet_inference.py``): the mask (drawn or stored) is zeroed outside the acquired
    columns ``[padding_left, padding_right)`` of the header's encoding limits, and the image is
    centre-cropped to the header's ``reconSpace`` matrix (to ``(W, W)`` when the image is narrower, fastMRI's
    FLAIR rule); ``crop=False`` keeps the full ``(H, W)`` image. A drawn mask passes its mask function's ACS
    count to the model (``num_low_frequencies``, as fastMRI's VarNet training and validation do);
    ``num_low_frequencies`` overrides it, and a stored or inferred mask uses fastMRI's rule (the centred block)
    unless it is given. ``coil_compress`` compresses data with more coils than the model accepts.

    ``out`` is checked before anything is read: it may never be the input (also through links), and
    an existing ``out`` is replaced only with ``overwrite=True``
    (:class:`~fastrecon.errors.OutputExistsError`). The output is written to a temporary file and
    renamed, so a failure never leaves half a file.

    ``format`` is ``h5`` (fastMRI-style), ``nifti``, ``dicom`` (a folder) or, for MRD raw input,
    ``mrd`` (MRD images); default from ``out``'s suffix (see :func:`fastrecon.data.outputs.output_format`).
    Geometry comes from the header where the file has one.
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
            num_low_frequencies=num_low_frequencies, coil_compress=coil_compress,
        )  # fmt: skip
    if fmt == "mrd":
        raise InputError(
            f"output {str(out)!r}: MRD images are written from MRD raw input only; {str(path)!r} holds no MRD raw "
            "data (acquisitions). Give an .h5, .nii.gz or --format dicom output."
        )
    # --- end MRD ---
    out = check_images_output(out, fmt, inputs=[path], overwrite=overwrite)
    mask = None
    padding: tuple[int, int] | None = None
    recon_size: tuple[int, int] | None = None
    geometry: ImageGeometry | None = None
    suffix = path.suffix.lower()  # folder mode lists .H5/.MAT too
    if suffix == ".h5":
        volume = read_fastmri(path)
        kspace = torch.from_numpy(volume.kspace)
        if volume.mask is not None:
            mask = torch.from_numpy(volume.mask)
        padding, recon_size = volume.padding, volume.recon_size
        geometry = fastmri_geometry(path)
    elif suffix == ".mat":
        kspace = torch.from_numpy(read_cmrxrecon(path, key).kspace)
    else:
        raise DataFormatError(
            f"{str(path)!r}: expected a fastMRI .h5 or a CMRxRecon .mat file (suffix {path.suffix!r})."
        )
    width = int(kspace.shape[-1])
    if acceleration is not None:
        func = create_mask_for_mask_type(mask_type, [center_fraction], [acceleration])
        drawn = func.sample(width, seed=seed_from_name(path.name))
        mask = drawn.mask
        if num_low_frequencies is None:
            num_low_frequencies = drawn.num_low_frequencies
    if padding is not None and mask is not None:
        mask = acquired_columns(mask, padding, source=path)
    image = recon.reconstruct(
        kspace, mask, num_low_frequencies=num_low_frequencies, coil_compress=coil_compress
    )
    attrs: dict[str, Any] = {
        "model": recon.config.name,
        "weights": str(recon.weights_path),
        "source": str(path),
    }
    if acceleration is not None:
        attrs.update(acceleration=acceleration, center_fraction=center_fraction, mask_type=mask_type)
    if num_low_frequencies is not None:
        attrs["num_low_frequencies"] = int(num_low_frequencies)
    if padding is not None and mask is not None:
        attrs.update(padding_left=int(padding[0]), padding_right=int(padding[1]))
    if crop and recon_size is not None:
        size = crop_size(recon_size, tuple(image.shape[-2:]))
        image = center_crop(image, size)
        attrs["crop_size"] = size
    # Checked again at the write: the input must not have been replaced by the output meanwhile.
    check_images_output(out, fmt, inputs=[path], overwrite=overwrite)
    return write_images(out, image, geometry, attrs=attrs, overwrite=overwrite, format=fmt)


def acquired_columns(
    mask: torch.Tensor, padding: tuple[int, int], *, source: str | Path = "the file"
) -> torch.Tensor:
    """A ``(W,)`` mask zeroed outside the acquired columns ``[left, right)`` (fastMRI's ``apply_mask(padding=...)``);
    limits outside ``[0, W]`` are clamped. Limits that leave no column of the mask (a header that does not
    describe this k-space) are refused (:class:`~fastrecon.errors.DataFormatError`)."""
    out = mask.clone()
    width = int(out.shape[-1])
    left, right = min(max(int(padding[0]), 0), width), min(max(int(padding[1]), 0), width)
    if left >= right:
        raise DataFormatError(
            f"{str(source)!r}: the header's encoding limits give acquired phase-encode columns "
            f"[{int(padding[0])}, {int(padding[1])}), none of the k-space's {width} columns; expected limits "
            f"inside [0, {width}] (the header does not describe this k-space)."
        )
    out[..., :left] = False
    out[..., right:] = False
    return out


def crop_size(recon_size: tuple[int, int], image_size: tuple[int, ...]) -> tuple[int, int]:
    """fastMRI's inference crop for an image ``(H, W)``: the header's ``reconSpace`` matrix, or ``(W, W)`` when
    the image is narrower than it (fastMRI's FLAIR rule); each side at most the image's."""
    height, width = int(image_size[0]), int(image_size[1])
    size = (int(recon_size[0]), int(recon_size[1]))
    if width < size[1]:
        size = (width, width)
    return min(size[0], height), min(size[1], width)
