"""Reconstruct an MRD (ISMRMRD) raw file: every assembled slice, into MRD images, a fastMRI-style ``.h5``,
NIfTI or a DICOM series (with the acquisitions' geometry)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastrecon.data.geometry import ImageGeometry
from fastrecon.data.mrd import SLICE_FIELDS, Encoding, MRDSlice, read_mrd
from fastrecon.data.mrd_images import crop_to_recon, to_mrd_images, write_mrd_images
from fastrecon.data.outputs import check_images_output, output_format, write_images
from fastrecon.physics.masks import create_mask_for_mask_type, seed_from_name


def is_mrd_output(out: str | Path) -> bool:
    """True when ``out`` asks for MRD images: a name ending in ``.mrd`` or ``.mrd.h5``."""
    return output_format(out) == "mrd"


def mrd_geometry(
    slices: Sequence[MRDSlice], encoding: Encoding, image_size: tuple[int, int]
) -> ImageGeometry:
    """Where the ``reconSpace``-cropped images ``image_size = (H, W)`` of ``slices`` lie: the ``reconSpace``
    field of view over the image's pixels, each slice's centre and the directions from the acquisition
    nearest its k-space centre (axis H along ``read_dir``, W along ``phase_dir``)."""
    fov_x, fov_y, fov_z = encoding.fov_mm
    voxel = (fov_x / image_size[0], fov_y / image_size[1], fov_z)
    heads = [s.head for s in slices]
    if not heads or any(h is None for h in heads):
        return ImageGeometry(voxel_size_mm=voxel)
    first = heads[0]
    return ImageGeometry(
        voxel_size_mm=voxel,
        positions=np.array([[float(v) for v in h.position] for h in heads]),
        read_dir=tuple(float(v) for v in first.read_dir),  # type: ignore[arg-type]
        phase_dir=tuple(float(v) for v in first.phase_dir),  # type: ignore[arg-type]
        slice_dir=tuple(float(v) for v in first.slice_dir),  # type: ignore[arg-type]
    )


def _block_acquired(mask: torch.Tensor, count: int) -> bool:
    """Whether the centred block of ``count`` columns (fastMRI's ACS block) is sampled in every slice of
    ``mask`` ``(N, 1, 1, W)``."""
    width = int(mask.shape[-1])
    start = (width - count + 1) // 2
    return 0 < count <= width and bool(mask[..., start : start + count].all())


def reconstruct_mrd_file(
    recon: Any,
    path: str | Path,
    out: str | Path,
    *,
    acceleration: float | None = None,
    center_fraction: float = 0.08,
    mask_type: str = "equispaced_fraction",
    overwrite: bool = False,
    format: str | None = None,
    num_low_frequencies: int | None = None,
    coil_compress: bool = False,
) -> Path:
    """Reconstruct every slice of an MRD raw file.

    The mask is each slice's acquired phase-encode lines; with ``acceleration`` a mask is drawn over W
    (seeded by the file name, as for fastMRI files) and intersected with the acquired lines. ``format``
    (default from ``out``: ``.mrd`` / ``.mrd.h5`` -> ``mrd``) ``mrd`` gets MRD magnitude images (float32,
    cropped to ``reconSpace``, with the acquisitions' geometry and indices); ``nifti`` and ``dicom`` the
    same crop and geometry; ``h5`` a fastMRI-style ``reconstruction (N, H, W)`` of the full matrix, with
    the slices in index order and their MRD indices in the attributes ``mrd_index_fields`` /
    ``mrd_indices`` ``(N, 6)``.
    ``num_low_frequencies`` (ACS lines) and ``coil_compress`` are passed to ``recon.reconstruct``; with
    ``acceleration`` and no ``num_low_frequencies``, the mask function's ACS count is passed when its centre
    block was acquired (else the model finds the centred block in the mask).
    """
    path = Path(path)
    fmt = output_format(out, format)
    out = check_images_output(out, fmt, inputs=[path], overwrite=overwrite)
    volume = read_mrd(path)
    kspace = torch.from_numpy(volume.kspace)
    mask = torch.from_numpy(volume.mask)
    if acceleration is not None:
        func = create_mask_for_mask_type(mask_type, [center_fraction], [acceleration])
        sampled = func.sample(kspace.shape[-1], seed=seed_from_name(path.name))
        mask = mask & sampled.mask.reshape(1, 1, 1, -1).to(torch.bool)
        if num_low_frequencies is None and _block_acquired(mask, sampled.num_low_frequencies):
            # The mask function's ACS count, as for fastMRI files (when its centre block was acquired).
            num_low_frequencies = sampled.num_low_frequencies
    image = recon.reconstruct(
        kspace, mask, num_low_frequencies=num_low_frequencies, coil_compress=coil_compress
    )
    check_images_output(out, fmt, inputs=[path], overwrite=overwrite)
    if fmt == "mrd":
        meta = {
            "FastreconModel": recon.config.name,
            "FastreconBackend": getattr(recon, "backend", None),
            "FastreconPrecision": getattr(recon, "precision", None),
        }
        images = to_mrd_images(np.asarray(image), volume.slices, volume.encoding, meta=meta)
        return write_mrd_images(out, images, header=volume.header, inputs=[path], overwrite=overwrite)
    attrs = {
        "model": recon.config.name,
        "weights": str(recon.weights_path),
        "source": str(path),
        # Which MRD image each of the N slices is (rows in index order): the .h5 has no other record.
        "mrd_index_fields": list(SLICE_FIELDS),
        "mrd_indices": volume.indices,
    }
    if acceleration is not None:
        attrs.update(acceleration=acceleration, center_fraction=center_fraction, mask_type=mask_type)
    if num_low_frequencies is not None:
        attrs["num_low_frequencies"] = int(num_low_frequencies)
    if fmt == "h5":
        return write_images(out, image, None, attrs=attrs, overwrite=overwrite, format=fmt)
    cropped = crop_to_recon(np.asarray(image), volume.encoding)
    geometry = mrd_geometry(volume.slices, volume.encoding, cropped.shape[-2:])
    return write_images(out, cropped, geometry, attrs=attrs, overwrite=overwrite, format=fmt)
