"""MRI physics on native complex tensors: centred FFTs, coil operators, data consistency, ACS."""

from fastrecon.physics.acs import (
    acs_bounds,
    acs_count_masks,
    acs_masks,
    infer_mask,
    mask_columns,
    slice_columns,
)
from fastrecon.physics.coils import complex_abs, rss, sens_expand, sens_reduce
from fastrecon.physics.dc import broadcast_mask, hard_dc, soft_dc
from fastrecon.physics.fft import fft2c, ifft2c

__all__ = [
    "acs_bounds",
    "acs_count_masks",
    "acs_masks",
    "broadcast_mask",
    "complex_abs",
    "fft2c",
    "hard_dc",
    "ifft2c",
    "infer_mask",
    "mask_columns",
    "rss",
    "sens_expand",
    "sens_reduce",
    "slice_columns",
    "soft_dc",
]
