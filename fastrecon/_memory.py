"""How many slices go through the model at once by default: activation memory per slice against a budget.

The default batch is ``budget // activation_bytes_per_slice(config, C, H, W)``, between 1 and the API's
cap. Both terms depend only on the model config, the k-space shape and the device (never on momentary
free memory), so a given model, shape and device always get the same batch, and graphs or engines
compiled per shape are reused from run to run.

**Budget** (:func:`memory_budget`): an explicit ``max_memory`` (bytes, or a string such as ``"4GiB"``),
else a share of the device's *total* memory: on CUDA half of the GPU's memory less the model's weights;
on CPU 1/16 of physical memory, at most 512 MiB (on CPU a larger batch buys no speed: demo-x8 measured
161 ms per slice at batch 1 against 194 ms at batch 4 on this 2-core machine).

**Estimate** (:func:`activation_bytes_per_slice`): the peak of an eager fp32 forward is reached in one
of three phases, each holding the k-space working set (input, sensitivity maps, current k-space and the
data-consistency step's temporaries: ``DC_TERMS`` copies of ``E = 8 C H W`` bytes) plus the largest
network activation of that phase:

- sensitivity network: a NormUnet on each coil image, at H, W padded to multiples of 16:
  ``C * UNET_TERMS * sens.chans * H16 * W16 * 4`` bytes (a U-Net's peak is about ``UNET_TERMS`` maps of
  its first-level width at full size: the skip stack, the decoder's concatenation and conv outputs);
- VarNet cascade: one NormUnet, ``UNET_TERMS * chans * H16 * W16 * 4``;
- ViT cascade: the decoder at the encoder's grid (stage ``i`` at ``img_size / (8, 4, 2, 1)``, about
  ``2 (in_i + out_i)`` maps) or at the native size (``2 (c4 + input_channels) + 2 c4`` maps of ``H W``),
  whichever is larger, plus the encoder's kept feature maps.

The constants were fitted on CPU (eager fp32, one torch thread, ``python -m fastrecon.bench.memory``):
the peak resident memory of ``reconstruct`` above the level before the call (``VmHWM`` after resetting
it through ``/proc/self/clear_refs``), at batch 1 and 4, for demo-x8, a VarNet with fastMRI's widths and
clip-x8's ViT-B decoders at several shapes; the estimate is an upper bound of the measured per-slice
growth within a factor of about two (``tests/test_memory.py`` checks the bound on a VarNet run). On
CUDA, ``torch.cuda.max_memory_allocated`` counts the same tensors, without the CPU allocator's slack.
Measured on a 2-core x86 machine (torch 2.14.1, 2026-12-02), MiB per slice, measured / estimated (this table
was measured before the free heap was released first, see below; only varnet-x8 4x256x256 was remeasured since):

    demo-x8   8x128x128   34 / 50       varnet-x8   4x256x256   61-75 / 100
    demo-x8  16x96x200   101 / 121      varnet-x8  10x128x96       25 / 47
    clip-x8   4x128x128  84-106 / 142

The issue's case, varnet-x8 on 16 slices of 4x256x256 (``--case varnet-x8:4x256x256 --batch 1,5,16``, the
allocator's free heap released before each measurement): peak 112 MiB at batch 1, 509 MiB at batch 5 (the default
here: 512 MiB / 100 MiB), 1290 MiB at batch 16 (the old default); 78.5 MiB per slice measured against 100
estimated. (Without releasing the free heap first, a later measurement reuses what an earlier one left and reads
low: 64 / 280 / 1168 MiB.)
"""

from __future__ import annotations

import math
import numbers
import os
import re
from typing import TYPE_CHECKING

from fastrecon.errors import InputError, InputTypeError

if TYPE_CHECKING:
    import torch

    from fastrecon.registry import ModelConfig

DC_TERMS = 10
"""Copies of the k-space (``E = 8 C H W`` bytes) alive at a phase's peak."""
UNET_TERMS = 10
"""Full-size maps of a U-Net's first-level width alive at its peak."""
VIT_TERMS = 1.5
"""Safety factor on the ViT decoder's counted maps (interpolation and concatenation temporaries)."""

CPU_SHARE = 16
"""On CPU the default budget is physical memory / CPU_SHARE ..."""
CPU_CAP = 512 * 2**20
"""... and at most this many bytes."""
CUDA_SHARE = 2
"""On CUDA the default budget is the GPU's total memory / CUDA_SHARE, less the weights."""

_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "kib": 2**10,
    "m": 1000**2, "mb": 1000**2, "mib": 2**20,
    "g": 1000**3, "gb": 1000**3, "gib": 2**30,
    "t": 1000**4, "tb": 1000**4, "tib": 2**40,
}  # fmt: skip
_MEMORY = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_memory(value: object, name: str = "max_memory") -> int:
    """Bytes from ``value``: a positive whole number of bytes, or a string such as ``"4GiB"``,
    ``"512 MB"``, ``"1.5e9"`` (units B, kB/MB/GB/TB = powers of 1000, KiB/MiB/GiB/TiB = powers of 1024)."""
    if isinstance(value, bool):
        raise InputTypeError(
            f"{name} is {value!r}; expected bytes (a positive whole number) or a string like '4GiB'."
        )
    if isinstance(value, numbers.Integral):
        number, unit = float(int(value)), ""
    elif isinstance(value, str):
        match = _MEMORY.match(value)
        unit = match.group(2).lower() if match else ""
        if match is None or unit not in _UNITS:
            raise InputError(
                f"{name} is {value!r}; expected a number of bytes with an optional unit "
                "(B, kB, MB, GB, TB, KiB, MiB, GiB, TiB), e.g. '4GiB' or '512MB'."
            )
        number = float(match.group(1))
    else:
        raise InputTypeError(
            f"{name} is {value!r} ({type(value).__name__}); expected bytes (a positive whole number) "
            "or a string like '4GiB'."
        )
    total = number * _UNITS[unit]
    if not math.isfinite(total) or total < 1:
        raise InputError(f"{name} is {value!r}; expected at least 1 byte.")
    return int(total)


def device_memory(device: torch.device) -> int:
    """Total memory of ``device`` in bytes: the GPU's memory, or the host's physical memory (capped by a
    cgroup limit where one is set)."""
    import torch

    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return int(torch.cuda.get_device_properties(index).total_memory)
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(limit_file, encoding="ascii") as fh:
                text = fh.read().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < total:
            total = int(text)
    return int(total)


def memory_budget(device: torch.device, max_memory: int | None = None, weight_bytes: int = 0) -> int:
    """Bytes the activations of one forward pass may use on ``device`` (see the module docstring)."""
    if max_memory is not None:
        return max_memory
    total = device_memory(device)
    if device.type == "cuda":
        return max(total // CUDA_SHARE - weight_bytes, 0)
    return min(total // CPU_SHARE, CPU_CAP)


def _pad16(n: int) -> int:
    return ((n - 1) | 15) + 1


def _unet_bytes(chans: int, height: int, width: int) -> int:
    return UNET_TERMS * chans * _pad16(height) * _pad16(width) * 4


def activation_bytes_per_slice(config: ModelConfig, coils: int, height: int, width: int) -> int:
    """Estimated peak bytes one slice of ``(coils, height, width)`` k-space adds to an fp32 forward of
    the model ``config`` describes (an upper bound of what was measured; see the module docstring)."""
    kspace = DC_TERMS * 8 * coils * height * width
    phases = [coils * _unet_bytes(config.sens.chans, height, width)]
    if config.family == "varnet":
        chans = config.varnet.chans if config.varnet is not None else 18
        phases.append(_unet_bytes(chans, height, width))
    elif config.encoder is not None and config.decoder is not None:
        enc, dec = config.encoder, config.decoder
        c1, c2, c3, c4 = dec.channels
        ins = (enc.embed_dim + c1, c1 + c2, c2 + c3, c3)
        outs = (c1, c2, c3, c4)
        stage_maps = max(
            2 * (i + o) * max(1, enc.img_size // f) ** 2
            for i, o, f in zip(ins, outs, (8, 4, 2, 1), strict=True)
        )
        native_maps = (2 * (c4 + dec.input_channels) + 2 * c4) * height * width
        tokens = (enc.img_size // enc.patch_size) ** 2 + 1
        features = (enc.num_blocks + 4) * tokens * enc.embed_dim
        phases.append(int(VIT_TERMS * 4 * (max(stage_maps, native_maps) + features)))
    return kspace + max(phases)


def default_batch(
    config: ModelConfig,
    coils: int,
    height: int,
    width: int,
    device: torch.device,
    *,
    max_memory: int | None = None,
    max_batch: int = 16,
    weight_bytes: int = 0,
) -> int:
    """Slices per forward pass: as many as the budget holds, at least 1 and at most ``max_batch``."""
    per_slice = max(activation_bytes_per_slice(config, coils, height, width), 1)
    budget = memory_budget(device, max_memory, weight_bytes)
    return max(1, min(max_batch, budget // per_slice))
