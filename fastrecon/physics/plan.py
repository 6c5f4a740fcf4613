"""Data consistency as a plan bound to one chunk of slices (DESIGN.md sections 1 and 7).

A :class:`DCForm` names one way of running the cascades' data consistency. ``form.bind(kspace0, mask,
sens)`` does the per-chunk work once (mask layout, maps, measured data) and returns a :class:`DCPlan`,
which owns the loop state. The unrolled loop only asks the plan for the current coil-combined image and
hands it each cascade's correction::

    plan = form.bind(kspace0, mask, sens)
    for cascade in cascades:
        plan.step(cascade.correction(plan.image(), ...), cascade.dc_weight)
    image = plan.rss_image()

:data:`KSPACE_2D` is the reference: the state is the full k-space and each step is
:func:`fastrecon.physics.dc.cascade_step`. The Triton kernels provide the same form with fused steps
(``fastrecon.kernels.ops.TRITON_2D``); forms with a different state (hybrid space) plug in here too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch

from fastrecon.physics.coils import rss, sens_reduce
from fastrecon.physics.dc import broadcast_mask, cascade_step
from fastrecon.physics.fft import ifft2c

ReduceFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepFn = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    tuple[torch.Tensor, torch.Tensor],
]


class DCPlan(Protocol):
    """The data-consistency state of one chunk across the cascades."""

    def image(self) -> torch.Tensor:
        """The current coil-combined complex image ``(N, H, W)`` (the next cascade's input)."""
        ...

    def step(self, correction: torch.Tensor, dc_weight: torch.Tensor) -> None:
        """Apply one cascade: soft data consistency with weight ``dc_weight`` and the image-domain
        ``correction`` ``(N, H, W)`` complex."""
        ...

    def rss_image(self) -> torch.Tensor:
        """RSS magnitude of the final coil images, ``(N, H, W)`` real (the models' output)."""
        ...

    def combined_image(self) -> torch.Tensor:
        """Final coil-combined complex image ``R F^-1 k``, ``(N, H, W)``."""
        ...


class DCForm(Protocol):
    """A way of running data consistency: ``name`` (reported to users) and ``bind``."""

    @property
    def name(self) -> str: ...

    def bind(self, kspace0: torch.Tensor, mask: torch.Tensor, sens: torch.Tensor) -> DCPlan:
        """Bind to masked k-space ``(N, C, H, W)``, its mask (broadcastable) and maps ``(N, C, H, W)``."""
        ...


class KSpacePlan:
    """Loop state in full 2-D k-space: ``k_{t+1} = k_t - w M (k_t - k0) - F E c_t``."""

    def __init__(
        self, kspace0: torch.Tensor, mask: torch.Tensor, sens: torch.Tensor, reduce: ReduceFn, step: StepFn
    ) -> None:
        self.kspace0 = kspace0
        self.mask = broadcast_mask(mask, kspace0.shape)
        self.sens = sens
        self.kspace = kspace0
        self._step = step
        self._reduce = reduce
        self._image = reduce(kspace0, sens)

    def image(self) -> torch.Tensor:
        return self._image

    def step(self, correction: torch.Tensor, dc_weight: torch.Tensor) -> None:
        self.kspace, self._image = self._step(
            self.kspace, self.kspace0, self.mask, dc_weight, self.sens, correction
        )

    def rss_image(self) -> torch.Tensor:
        return rss(ifft2c(self.kspace), dim=1)

    def combined_image(self) -> torch.Tensor:
        return self._image


@dataclass(frozen=True)
class KSpaceForm:
    """The 2-D k-space form with swappable ``reduce`` (``R F^-1``) and ``step`` implementations."""

    name: str = "2d"
    reduce: ReduceFn = field(default=sens_reduce)
    step: StepFn = field(default=cascade_step)

    def bind(self, kspace0: torch.Tensor, mask: torch.Tensor, sens: torch.Tensor) -> KSpacePlan:
        return KSpacePlan(kspace0, mask, sens, self.reduce, self.step)


KSPACE_2D = KSpaceForm()
"""The fp32 eager reference form: plain torch, fastMRI's order of operations."""
