"""The unrolled loop shared by every model family.

Cascade ``t`` works in k-space (E2E-VarNet form)::

    x_t     = R F^-1 k_t                                  (sens_reduce)
    k_{t+1} = k_t - mu_t M (k_t - k0) - F E c_t(x_t)      (soft DC and the regulariser's correction)

``c_t`` is the cascade's image-domain correction: fastMRI's NormUnet for E2E-VarNet, and for the
ViT-prior models the negated residual of the denoiser ``D(x) = x - c(x)`` (so a zero-initialised head
leaves the k-space untouched and the untrained model returns the zero-filled input). The output
is the RSS of ``F^-1 k_T``.

The data consistency is a plan bound once per chunk (:mod:`fastrecon.physics.plan`); ``model.dc``
picks its form, so the Triton kernels (``fastrecon.kernels``) replace the eager reference without
touching the models. The forward takes tensors only: the ACS block comes in from the caller
(:func:`fastrecon.prepare.prepare`), so a prepared forward has no host synchronisation and compiles
to one graph.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Sequence
from typing import Literal, cast

import torch
from torch import nn

from fastrecon.errors import InputError
from fastrecon.physics import acs_masks, broadcast_mask
from fastrecon.physics.plan import KSPACE_2D, DCForm, DCPlan

Encode = Callable[[torch.Tensor], Sequence[torch.Tensor]]
"""Magnitude ``(B, 1, H, W)`` in [0, 1] -> one feature map per used encoder block (ViT models)."""

Correction = Callable[[torch.Tensor], torch.Tensor]
"""A cascade's image-domain correction: complex ``(N, H, W)`` -> complex ``(N, H, W)``."""

Output = Literal["rss", "complex"]


class Cascade(nn.Module):
    """One cascade: a learned soft-DC weight and an image-domain correction."""

    dc_weight: nn.Parameter

    def correction(self, image: torch.Tensor, encode: Encode | None) -> torch.Tensor:
        """Image-domain correction ``(N, H, W)`` complex; ``encode`` is the model's encoder call, if any."""
        raise NotImplementedError


class UnrolledNet(nn.Module):
    """Sensitivity estimation + ``len(cascades)`` cascades. Subclasses fill ``sens_net`` and ``cascades``.

    Attributes set by backends (plain attributes, not part of the state dict):

    - ``dc``: the data-consistency form (:data:`fastrecon.physics.plan.KSPACE_2D`, the reference, by default).
    - ``network_dtype``: ``None`` (fp32) or ``torch.bfloat16`` / ``torch.float16``: the sensitivity
      network and the cascades' corrections run under autocast in that dtype (norms, softmax and
      reductions stay fp32 as autocast keeps them); data consistency always stays complex64.
    """

    sens_net: nn.Module
    cascades: nn.ModuleList

    def __init__(self) -> None:
        super().__init__()
        self.dc: DCForm = KSPACE_2D
        self.network_dtype: torch.dtype | None = None

    def reset_backend(self) -> None:
        """Back to the eager fp32 reference: 2-D DC form, fp32 networks, no engines."""
        self.dc = KSPACE_2D
        self.network_dtype = None

    def backend_objects(self) -> list[object]:
        """Objects a backend attached (engines, sessions): shared, not copied, by ``copy.deepcopy``."""
        return [self.dc]

    def encoder_call(self) -> Encode | None:
        """What the cascades call for encoder features (``None``: no encoder)."""
        return None

    def correction_calls(self) -> list[Correction]:
        """One image -> correction callable per cascade, in order (the loop calls nothing else)."""
        encode = self.encoder_call()
        return [functools.partial(cast(Cascade, c).correction, encode=encode) for c in self.cascades]

    @property
    def min_acs_lines(self) -> int:
        return int(getattr(self.sens_net, "min_acs_lines", 0))

    def _networks(self, device: torch.device) -> contextlib.AbstractContextManager[object]:
        if self.network_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.network_dtype)

    def unroll(self, kspace0: torch.Tensor, mask: torch.Tensor, acs: torch.Tensor | None = None) -> DCPlan:
        """Run every cascade on masked k-space ``(N, C, H, W)`` complex with its sampling mask.

        ``acs``: bool ``(S, 1, 1, W)`` (S = 1 or N), the autocalibration columns. When omitted it is
        searched for on the host (:func:`fastrecon.physics.acs_masks`), which breaks compiled graphs;
        the API passes it in. Returns the bound plan after the last cascade.
        """
        if kspace0.ndim != 4 or not kspace0.is_complex():
            raise InputError(
                f"kspace0 must be complex (N, C, H, W), got shape {tuple(kspace0.shape)} and dtype {kspace0.dtype}."
            )
        mask = broadcast_mask(mask, kspace0.shape)
        if acs is None:
            acs = acs_masks(mask, min_lines=self.min_acs_lines)[:, None, None, :]
        with self._networks(kspace0.device):
            sens = self.sens_net(kspace0, mask, acs)
        plan = self.dc.bind(kspace0, mask, sens)
        for module, correct in zip(self.cascades, self.correction_calls(), strict=True):
            with self._networks(kspace0.device):
                correction = correct(plan.image())
            plan.step(correction, cast(Cascade, module).dc_weight)
        return plan

    def forward(
        self,
        kspace0: torch.Tensor,
        mask: torch.Tensor,
        acs: torch.Tensor | None = None,
        output: Output = "rss",
    ) -> torch.Tensor:
        """RSS magnitude ``(N, H, W)`` (``output="rss"``) or the coil-combined complex image
        (``output="complex"``) from masked k-space ``(N, C, H, W)``, its mask and optionally its ACS block."""
        plan = self.unroll(kspace0, mask, acs)
        return plan.rss_image() if output == "rss" else plan.combined_image()
