"""E2E-VarNet (Sriram et al., MICCAI 2020) on native complex64 tensors, state-dict compatible with fastMRI.

After fastMRI's ``VarNet`` / ``VarNetBlock`` (facebookresearch/fastMRI, ``fastmri/models/varnet.py``,
Copyright (c) Facebook, Inc. and its affiliates, MIT licence). The module tree is fastMRI's::

    sens_net.norm_unet.unet.*          SensitivityModel
    cascades.<t>.model.unet.*          NormUnet of cascade t
    cascades.<t>.dc_weight             soft data-consistency weight, shape (1,)

so a fastMRI ``VarNet`` state dict loads with ``strict=True`` (see
:mod:`fastrecon.models.fastmri_compat` for Lightning/DDP checkpoints). The cascade loop and the
data consistency live in :class:`~fastrecon.models.unrolled.UnrolledNet`; per cascade::

    k_{t+1} = k_t - dc_weight_t * M (k_t - k0) - F E NormUnet_t(R F^-1 k_t)

which is fastMRI's ``VarNetBlock`` in the same order of operations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from fastrecon.errors import InputError
from fastrecon.models.sens import SensitivityModel
from fastrecon.models.unet import NormUnet
from fastrecon.models.unrolled import Cascade, Encode, UnrolledNet

if TYPE_CHECKING:
    from fastrecon.registry import ModelConfig


class VarNetCascade(Cascade):
    """One E2E-VarNet cascade: a NormUnet regulariser (``model``) and a learned soft-DC weight."""

    def __init__(self, chans: int = 18, pools: int = 4) -> None:
        super().__init__()
        self.model = NormUnet(chans, pools)
        self.dc_weight = nn.Parameter(torch.ones(1))

    def correction(self, image: torch.Tensor, encode: Encode | None) -> torch.Tensor:
        """``NormUnet(image)`` for the coil-combined complex image ``(N, H, W)`` (no encoder)."""
        return self.model(image)


class VarNet(UnrolledNet):
    """fastMRI's E2E-VarNet: sensitivity network + ``num_cascades`` NormUnet cascades.

    ``forward(kspace0, mask)`` maps complex masked k-space ``(N, C, H, W)`` and its mask (1-D
    ``(W,)``, 2-D ``(H, W)`` or 4-D broadcastable) to the RSS image ``(N, H, W)`` float32.
    The defaults give fastMRI's 29,936,966-parameter model. ``min_acs_lines`` is the fewest centred
    sampled columns the sensitivity network accepts (fewer raise :class:`~fastrecon.errors.InputError`).
    """

    def __init__(
        self,
        num_cascades: int = 12,
        sens_chans: int = 8,
        sens_pools: int = 4,
        chans: int = 18,
        pools: int = 4,
        eps: float = 1e-12,
        *,
        min_acs_lines: int = 2,
    ) -> None:
        super().__init__()
        if num_cascades < 1:
            raise InputError(f"num_cascades must be at least 1, got {num_cascades}.")
        self.sens_net = SensitivityModel(
            chans=sens_chans, pools=sens_pools, eps=eps, min_acs_lines=min_acs_lines
        )
        self.cascades = nn.ModuleList([VarNetCascade(chans, pools) for _ in range(num_cascades)])

    @classmethod
    def from_config(cls, config: ModelConfig) -> VarNet:
        """Build the (randomly initialised) VarNet a ``family == "varnet"`` config describes."""
        from fastrecon.registry import VarNetConfig

        if config.family != "varnet":
            raise InputError(
                f"config {config.name!r} has family {config.family!r}; VarNet needs family 'varnet'."
            )
        varnet = config.varnet if config.varnet is not None else VarNetConfig()
        return cls(
            num_cascades=config.num_cascades,
            sens_chans=config.sens.chans,
            sens_pools=config.sens.pools,
            chans=varnet.chans,
            pools=varnet.pools,
            eps=config.sens.eps,
            min_acs_lines=config.contract.min_acs_lines,
        )
