"""The unrolled loop shared by every model family.

Cascade ``t`` works in k-space (E2E-VarNet form)::

    x_t     = R F^-1 k_t                                  (sens_reduce)
    k_{t+1} = k_t - mu_t M (k_t - k0) - F E c_t(x_t)      (soft DC and the regulariser's correction)

``c_t`` is the cascade's image-domain correction: fastMRI's NormUnet for E2E-VarNet, and for the
ViT-prior models the negated residual of the denoiser ``D(x) = x - c(x)`` (so a zero-initialised head
leaves the k-space untouched and the untrained model returns the zero-filled input). The output
is the RSS of ``F^-1 k_T``.

The data-consistency arithmetic goes through :class:`DCOps`, so the Triton kernels
(``fastrecon.kernels``) can replace the eager reference without touching the models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, cast

import torch
from torch import nn

from fastrecon.physics import broadcast_mask, ifft2c, rss, sens_expand, sens_reduce, soft_dc


class DCOps(Protocol):
    """The data-consistency operations one cascade needs, as a swappable set."""

    def sens_reduce(self, kspace: torch.Tensor, sens: torch.Tensor) -> torch.Tensor: ...

    def cascade_step(
        self,
        kspace: torch.Tensor,
        kspace0: torch.Tensor,
        mask: torch.Tensor,
        dc_weight: torch.Tensor | float,
        sens: torch.Tensor,
        correction: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``k' = k - w M (k - k0) - F E correction``; returns ``(k', R F^-1 k')``."""
        ...


class EagerDCOps:
    """The fp32 eager reference: plain torch, fastMRI's order of operations."""

    def sens_reduce(self, kspace: torch.Tensor, sens: torch.Tensor) -> torch.Tensor:
        return sens_reduce(kspace, sens)

    def cascade_step(
        self,
        kspace: torch.Tensor,
        kspace0: torch.Tensor,
        mask: torch.Tensor,
        dc_weight: torch.Tensor | float,
        sens: torch.Tensor,
        correction: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        kspace_next = soft_dc(kspace, kspace0, mask, dc_weight) - sens_expand(correction, sens)
        return kspace_next, sens_reduce(kspace_next, sens)


@dataclass
class UnrolledOutput:
    """What the unrolled loop produced: final k-space ``(N, C, H, W)`` and the sensitivity maps used."""

    kspace: torch.Tensor
    sens: torch.Tensor

    def rss_image(self) -> torch.Tensor:
        """RSS magnitude of the coil images, ``(N, H, W)`` float (the models' output)."""
        return rss(ifft2c(self.kspace), dim=1)

    def combined_image(self) -> torch.Tensor:
        """Coil-combined complex image ``R F^-1 k``, ``(N, H, W)``."""
        return sens_reduce(self.kspace, self.sens)


class Cascade(nn.Module):
    """One cascade: a learned soft-DC weight and an image-domain correction."""

    dc_weight: nn.Parameter

    def correction(self, image: torch.Tensor, shared: nn.Module | None) -> torch.Tensor:
        """Image-domain correction ``(N, H, W)`` complex; ``shared`` is the model's shared module, if any."""
        raise NotImplementedError


class UnrolledNet(nn.Module):
    """Sensitivity estimation + ``len(cascades)`` cascades. Subclasses fill ``sens_net`` and ``cascades``.

    ``shared_module()`` is handed to every cascade (the frozen encoder of the ViT models), so it is
    stored once in the state dict.
    """

    sens_net: nn.Module
    cascades: nn.ModuleList

    def __init__(self) -> None:
        super().__init__()
        self.dc_ops: DCOps = EagerDCOps()

    def shared_module(self) -> nn.Module | None:
        return None

    def unroll(self, kspace0: torch.Tensor, mask: torch.Tensor) -> UnrolledOutput:
        """Run every cascade on masked k-space ``(N, C, H, W)`` complex with its sampling mask."""
        mask = broadcast_mask(mask, kspace0.shape)
        sens = self.sens_net(kspace0, mask)
        shared = self.shared_module()
        kspace = kspace0
        image = self.dc_ops.sens_reduce(kspace, sens)
        for module in self.cascades:
            cascade = cast(Cascade, module)
            correction = cascade.correction(image, shared)
            kspace, image = self.dc_ops.cascade_step(
                kspace, kspace0, mask, cascade.dc_weight, sens, correction
            )
        return UnrolledOutput(kspace=kspace, sens=sens)

    def forward(self, kspace0: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """RSS magnitude image ``(N, H, W)`` from masked k-space ``(N, C, H, W)`` and its mask."""
        return self.unroll(kspace0, mask).rss_image()
