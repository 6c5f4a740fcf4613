"""Reconstruct an MRD (ISMRMRD) raw file: every assembled slice, into MRD images or a fastMRI-style ``.h5``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastrecon._files import check_output
from fastrecon.data.fastmri import write_reconstruction
from fastrecon.data.mrd import SLICE_FIELDS, read_mrd
from fastrecon.data.mrd_images import to_mrd_images, write_mrd_images
from fastrecon.physics.masks import create_mask_for_mask_type, seed_from_name


def is_mrd_output(out: str | Path) -> bool:
    """True when ``out`` asks for MRD images: a name ending in ``.mrd`` or ``.mrd.h5``."""
    name = Path(out).name.lower()
    return name.endswith(".mrd") or name.endswith(".mrd.h5")


def reconstruct_mrd_file(
    recon: Any,
    path: str | Path,
    out: str | Path,
    *,
    acceleration: float | None = None,
    center_fraction: float = 0.08,
    mask_type: str = "equispaced_fraction",
    overwrite: bool = False,
) -> Path:
    """Reconstruct every slice of an MRD raw file.

    The mask is each slice's acquired phase-encode lines; with ``acceleration`` a mask is drawn over W
    (seeded by the file name, as for fastMRI files) and intersected with the acquired lines. ``out``
    ending in ``.mrd`` / ``.mrd.h5`` gets MRD magnitude images (float32, cropped to ``reconSpace``, with
    the acquisitions' geometry and indices); any other name a fastMRI-style ``reconstruction (N, H, W)`` with the slices in index order and their
    MRD indices in the attributes ``mrd_index_fields`` / ``mrd_indices`` ``(N, 6)``.
    """
    path = Path(path)
    out = check_output(out, inputs=[path], overwrite=overwrite)
    volume = read_mrd(path)
    kspace = torch.from_numpy(volume.kspace)
    mask = torch.from_numpy(volume.mask)
    if acceleration is not None:
        func = create_mask_for_mask_type(mask_type, [center_fraction], [acceleration])
        drawn = func(kspace.shape[-1], seed=seed_from_name(path.name)).reshape(1, 1, 1, -1).to(torch.bool)
        mask = mask & drawn
    image = recon.reconstruct(kspace, mask)
    check_output(out, inputs=[path], overwrite=overwrite)
    if is_mrd_output(out):
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
    return write_reconstruction(out, image, attrs=attrs, overwrite=overwrite)
