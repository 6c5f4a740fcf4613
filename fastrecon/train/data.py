"""Training data that needs no files: simulated multicoil slices drawn on the fly."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from fastrecon.data.dataset import SliceSample
from fastrecon.data.simulate import simulate_slice
from fastrecon.physics.masks import AnyMaskFunc


class SimulatedSliceDataset(Dataset[SliceSample]):
    """``length`` simulated cardiac-like slices; item ``i`` is seeded by ``seed + i`` (reproducible).

    Each item is a fresh phantom frame with smooth phase, ``num_coils`` birdcage coils and complex
    noise at ``snr_db``; the mask comes from ``mask_func`` seeded per item. Targets are the RSS of
    the fully sampled coil images, as in fastMRI.
    """

    def __init__(
        self,
        length: int,
        mask_func: AnyMaskFunc,
        *,
        size: tuple[int, int] = (128, 128),
        num_coils: int = 8,
        snr_db: float | None = 30.0,
        seed: int = 0,
    ) -> None:
        self.length = length
        self.mask_func = mask_func
        self.size = size
        self.num_coils = num_coils
        self.snr_db = snr_db
        self.seed = seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> SliceSample:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} simulated slices")
        item_seed = self.seed + index
        sim = simulate_slice(self.size, self.num_coils, snr_db=self.snr_db, seed=item_seed)
        drawn = self.mask_func.sample(self.size[1], seed=item_seed)
        kspace = sim.kspace[0]
        masked = torch.where(drawn.mask, kspace, torch.zeros((), dtype=kspace.dtype))
        target = sim.target[0]
        return SliceSample(
            masked_kspace=masked,
            mask=drawn.mask,
            target=target,
            fname=f"simulated-{item_seed}",
            slice_index=0,
            max_value=float(target.max()),
            num_low_frequencies=drawn.num_low_frequencies,
            has_target=True,
        )
