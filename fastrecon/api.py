"""The one-call API: ``fastrecon.load(name).reconstruct(kspace)``."""

from __future__ import annotations

import copy
import dataclasses
import numbers
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fastrecon import weights as _weights
from fastrecon._arrays import as_complex_kspace, from_torch, to_torch
from fastrecon._memory import default_batch, parse_memory
from fastrecon.errors import (
    BackendUnavailableError,
    InputError,
    InputTypeError,
    ReconstructionError,
)
from fastrecon.export import Runner, get_backend, prepare_runner
from fastrecon.export._backend import check_dc, check_precision
from fastrecon.models import build_model
from fastrecon.models.unrolled import Output, UnrolledNet
from fastrecon.physics import broadcast_mask
from fastrecon.prepare import prepare
from fastrecon.registry import ModelConfig, get_config

# Default slices per forward pass: as many as the activation-memory budget holds (an estimate per
# model and shape against the device's total memory or ``max_memory``; fastrecon._memory), at most
# _MAX_BATCH, so large inputs (a whole cine stack) stream through in chunks instead of running out of memory.
_MAX_BATCH = 16


@dataclass
class Reconstructor:
    """A loaded model ready to reconstruct. Build it with :func:`fastrecon.load`."""

    model: UnrolledNet
    config: ModelConfig
    device: torch.device
    runner: Runner
    backend: str = "eager"
    precision: str = "fp32"
    weights_path: Path | None = None
    batch_size: int | None = None
    max_memory: int | None = None

    def __call__(self, kspace: Any, mask: Any = None, **kwargs: Any) -> Any:
        return self.reconstruct(kspace, mask, **kwargs)

    def info(self) -> dict[str, Any]:
        """What runs: model, device, backend, precision, data-consistency form, and the backend's own
        facts (compiled or not, engine cache hits, ...), so a benchmark can record it."""
        return {"model": self.config.name, "device": str(self.device), **self.runner.info()}

    def with_backend(self, backend: str, precision: str = "fp32", dc: str = "auto") -> Reconstructor:
        """The same model and weights on another backend / precision (a copy of the model; engines and
        sessions this one holds are shared, not copied, then dropped from the copy)."""
        memo: dict[int, object] = {id(o): o for o in self.model.backend_objects() if o is not None}
        model = copy.deepcopy(self.model, memo)
        model.reset_backend()
        runner = prepare_runner(model, backend, self.device, precision, dc)
        return dataclasses.replace(self, model=model, runner=runner, backend=backend, precision=precision)

    def reconstruct(
        self,
        kspace: Any,
        mask: Any = None,
        *,
        return_complex: bool = False,
        batch_size: int | None = None,
        num_low_frequencies: int | None = None,
        coil_compress: bool = False,
    ) -> Any:
        """Reconstruct undersampled multicoil k-space.

        Args:
            kspace: ``(C, H, W)`` one slice or ``(N, C, H, W)`` slices/frames; numpy, torch or CuPy;
                complex64/complex128, or real with a trailing dimension of 2. Unsampled entries are 0.
            mask: sampled phase-encode columns ``(W,)``, sampled points ``(H, W)``, or one mask per slice
                ``(N, 1, 1, W)`` / ``(N, 1, H, W)``; bool or 0/1. Entries outside the mask are zeroed (junk,
                even NaN, is allowed there). When omitted it is inferred from the zero pattern of
                ``kspace``, slice by slice.
            return_complex: return the coil-combined complex image instead of the RSS magnitude.
            batch_size: slices per forward pass (default: chosen from the input size).
            num_low_frequencies: the number of autocalibration (ACS) lines, the centred block of
                columns from ``(W - n + 1) // 2`` that feeds the coil-sensitivity network, as fastMRI's
                ``VarNet(masked_kspace, mask, num_low_frequencies)`` takes it (its training and validation
                pass the mask function's count, e.g. ``SampledMask.num_low_frequencies``). None (default)
                finds the block in the mask (fastMRI's rule without a count). Every column of the block must
                be sampled.
            coil_compress: when k-space has more coils than the model accepts (``config.contract.max_coils``),
                compress it to that many virtual coils (SVD over all measured samples of this call,
                :mod:`fastrecon.physics.compress`) instead of refusing it. No effect on data that fits.

        Returns:
            ``(H, W)`` or ``(N, H, W)``: the RSS magnitude (the coil-combined complex image with
            ``return_complex``), float32/complex64 for single-precision input and float64/complex128 for
            double-precision input, in the input's array library and on its device. Each slice is
            scaled to a fixed range before the model and scaled back after it (exact powers of two; the
            models are scale-equivariant), so any finite input works.
        """
        if not isinstance(return_complex, bool):
            raise InputTypeError(f"return_complex is {return_complex!r}; expected True or False.")
        tensor, origin = to_torch(kspace, "kspace")
        tensor = as_complex_kspace(tensor)
        single = tensor.ndim == 3
        if tensor.ndim not in (3, 4):
            raise InputError(
                f"k-space has {tensor.ndim} dimensions {tuple(tensor.shape)}; expected (C, H, W) for one slice "
                "or (N, C, H, W) for several (complex, or real with a trailing 2)."
            )
        if single:
            tensor = tensor.unsqueeze(0)
        num, coils, height, width = tensor.shape
        if min(num, coils, height, width) == 0:
            raise InputError(
                f"k-space shape (N, C, H, W) = {tuple(tensor.shape)} has an empty dimension; expected at least one coil and a non-empty matrix."
            )
        if not isinstance(coil_compress, bool):
            raise InputTypeError(f"coil_compress is {coil_compress!r}; expected True or False.")
        mask_t = None if mask is None else self._mask_tensor(mask, tensor.shape)
        tensor = self._fit_coils(tensor, mask_t, coil_compress)
        coils = int(tensor.shape[1])
        contract = self.config.contract
        batch = _check_batch(batch_size if batch_size is not None else self.batch_size)
        if batch is None:
            batch = self._default_batch(coils, height, width)
        batch = min(batch, num)
        per_slice_mask = mask_t is not None and mask_t.ndim == 4 and mask_t.shape[0] > 1
        output: Output = "complex" if return_complex else "rss"
        outputs = []
        with torch.inference_mode():
            for start in range(0, num, batch):
                chunk_mask = (
                    mask_t[start : start + batch] if per_slice_mask and mask_t is not None else mask_t
                )
                prepared = prepare(
                    tensor[start : start + batch],
                    chunk_mask,
                    min_acs_lines=contract.min_acs_lines,
                    device=self.device,
                    num_low_frequencies=num_low_frequencies,
                )
                run = prepared.padded(batch) if self.runner.static_batch else prepared
                image = prepared.unscale(self.runner(run, output)[: prepared.batch])
                if not bool(torch.isfinite(torch.view_as_real(image) if image.is_complex() else image).all()):
                    raise ReconstructionError(
                        f"the {self.info()['backend']} backend ({self.precision}) gave a non-finite image for slices "
                        f"{start}..{start + prepared.batch - 1}; the input is finite, so this is a numerical failure."
                    )
                outputs.append(image.to(origin.device))
        result = torch.cat(outputs)
        if single:
            result = result[0]
        return from_torch(result, origin)

    def stream(
        self,
        items: Iterable[Any],
        *,
        batch_size: int | None = None,
        return_complex: bool = False,
        num_low_frequencies: int | None = None,
        coil_compress: bool = False,
    ) -> Iterator[Any]:
        """Reconstruct slices or frames as they come; yields their images in order, lazily.

        Args:
            items: any iterable (a generator reading a scanner or a file). Each item is one slice or frame:
                k-space ``(C, H, W)`` (its mask inferred from its zero pattern), a ``(kspace, mask)`` pair, or
                a mapping ``{"kspace": ..., "mask": ... (optional), "key": ... (optional)}``; arrays as for
                :meth:`reconstruct`. Shapes may change from item to item.
            batch_size: the most items per forward pass (default: the loader's ``batch_size``, else 16).
                After waiting for one item the stream takes only the items already waiting (read ahead by
                a background thread), so a slow source gets each image as soon as its item arrived and a
                fast one gets full batches; consecutive items of one shape, dtype and mask layout share a
                batch. At most ``batch_size + 1`` items are read ahead of the images handed out.
            return_complex, num_low_frequencies: as for :meth:`reconstruct`, for every item.
            coil_compress: as for :meth:`reconstruct`, per item (each frame its own virtual coils).

        Yields:
            each item's image ``(H, W)`` as :meth:`reconstruct` returns it for that item alone (to fp32
            rounding), in its array library; ``(key, image)`` for mapping items with a ``"key"``. An error
            (bad item, or one raised by ``items``) is raised after the images of the items before it.
        """
        from fastrecon._stream import stream

        if not isinstance(return_complex, bool):
            raise InputTypeError(f"return_complex is {return_complex!r}; expected True or False.")
        if not isinstance(coil_compress, bool):
            raise InputTypeError(f"coil_compress is {coil_compress!r}; expected True or False.")
        batch = _check_batch(batch_size) or self.batch_size or _MAX_BATCH
        try:
            iterator = iter(items)
        except TypeError:
            raise InputTypeError(
                f"items is a {type(items).__name__}, not an iterable; expected an iterable of slices or frames "
                "(a list or a generator of (C, H, W) k-space, (kspace, mask) pairs or mappings)."
            ) from None
        return stream(
            self,
            iterator,
            batch_size=batch,
            return_complex=return_complex,
            num_low_frequencies=num_low_frequencies,
            coil_compress=coil_compress,
        )

    def _fit_coils(self, kspace: torch.Tensor, mask: torch.Tensor | None, compress: bool) -> torch.Tensor:
        """``kspace`` ``(N, C, H, W)`` checked against the model's coil range; more coils than it accepts
        are compressed to ``max_coils`` virtual coils when ``compress``, else refused with that advice."""
        contract = self.config.contract
        coils = int(kspace.shape[1])
        if coils < contract.min_coils:
            raise InputError(
                f"k-space has {coils} coils; {self.config.name} accepts {contract.min_coils}..{contract.max_coils}."
            )
        if coils <= contract.max_coils:
            return kspace
        if not compress:
            raise InputError(
                f"k-space has {coils} coils; {self.config.name} accepts {contract.min_coils}..{contract.max_coils}. "
                f"Compress the data to {contract.max_coils} virtual coils with coil_compress=True "
                "(command line: --coil-compress)."
            )
        from fastrecon._arrays import check_finite
        from fastrecon.physics.compress import coil_compress

        if mask is None:
            check_finite(kspace, "k-space")
        else:
            check_finite(
                torch.where(broadcast_mask(mask.to(kspace.device), kspace.shape), kspace, 0),
                "k-space (inside the mask)",
            )
        return coil_compress(kspace, contract.max_coils, mask)

    def _mask_tensor(self, mask: Any, shape: torch.Size) -> torch.Tensor:
        """A user's mask as a bool tensor (on its own device), checked against k-space ``shape``."""
        num, _, height, width = shape
        mask_t, _ = to_torch(mask, "mask")
        if mask_t.is_complex():
            raise InputError(f"mask has complex dtype {mask_t.dtype}; expected bool or 0/1 numbers.")
        if mask_t.ndim not in (1, 2, 4):
            raise InputError(
                f"mask has shape {tuple(mask_t.shape)}; expected (W,) = ({width},), (H, W) = ({height}, {width}), "
                f"or per slice (N, 1, 1, W) / (N, 1, H, W) with N = {num}."
            )
        if mask_t.dtype != torch.bool:
            values = mask_t.to(torch.float64)
            bad = ~((values == 0) | (values == 1))
            if bool(bad.any()):
                example = values[bad].flatten()[0].item()
                raise InputError(
                    f"mask has {int(bad.sum())} value(s) other than 0 and 1 (e.g. {example}); expected bool or 0/1."
                )
        if mask_t.ndim == 4 and mask_t.shape[0] not in (1, num):  # (2, 1, 1, W) broadcasts against 1 slice
            raise InputError(
                f"mask has shape {tuple(mask_t.shape)}: {mask_t.shape[0]} per-slice masks for {num} slice(s); "
                f"expected (N, 1, 1, W) / (N, 1, H, W) with N = {num}, or N = 1."
            )
        return broadcast_mask(mask_t, shape).reshape(mask_t.shape)

    def _default_batch(self, coils: int, height: int, width: int) -> int:
        """Slices per forward pass for ``(coils, height, width)`` slices when no batch_size is given:
        the activation estimate of this model and shape against ``max_memory`` or the device's
        total memory (never momentary free memory, so the same shape always gets the same batch)."""
        weights = 0
        if self.device.type == "cuda" and self.max_memory is None:
            weights = sum(p.numel() * p.element_size() for p in self.model.parameters())
        return default_batch(
            self.config, coils, height, width, self.device,
            max_memory=self.max_memory, max_batch=_MAX_BATCH, weight_bytes=weights,
        )  # fmt: skip


def _check_batch(batch: object) -> int | None:
    """``None`` or a positive whole number of slices (numpy integers accepted)."""
    if batch is None:
        return None
    if isinstance(batch, bool) or not isinstance(batch, numbers.Integral) or int(batch) < 1:
        raise InputError(f"batch_size is {batch!r}; expected a positive whole number of slices.")
    return int(batch)


def _device_available(kind: str) -> bool:
    """Whether torch can run on a device of this type here (without initialising CUDA for other types)."""
    import importlib.util

    if kind == "cpu":
        return True
    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "mps":
        return bool(torch.backends.mps.is_available())
    if kind == "xpu":
        return bool(hasattr(torch, "xpu") and torch.xpu.is_available())
    if kind == "xla":
        return importlib.util.find_spec("torch_xla") is not None
    return False


_DEVICE_CHOICES = "'cpu', 'cuda' or 'cuda:N' (also 'mps', 'xpu', 'xla' where present)"


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str | torch.device) or (isinstance(device, str) and not device.strip()):
        raise InputError(f"device is {device!r}; expected {_DEVICE_CHOICES}.")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(
            f"device {device!r} is not a device torch knows; expected {_DEVICE_CHOICES}."
        ) from None
    if resolved.type not in ("cpu", "cuda", "mps", "xpu", "xla"):
        raise BackendUnavailableError(
            f"device {str(device)!r} holds no data to run on; expected {_DEVICE_CHOICES}."
        )
    if not _device_available(resolved.type):
        where = "no CUDA GPU" if resolved.type == "cuda" else f"no {resolved.type} device"
        raise BackendUnavailableError(f"device {str(device)!r} was asked for, but torch sees {where} here.")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise BackendUnavailableError(
            f"device {str(device)!r} was asked for, but torch sees {torch.cuda.device_count()} CUDA GPU(s) "
            f"(cuda:0..cuda:{torch.cuda.device_count() - 1})."
        )
    return resolved


def load(
    name: str | os.PathLike[str],
    *,
    weights: _weights.WeightsArg = "auto",
    device: str | torch.device | None = None,
    backend: str = "eager",
    precision: str = "fp32",
    encoder_weights: str | os.PathLike[str] | None = None,
    batch_size: int | None = None,
    dc: str = "auto",
    max_memory: int | str | None = None,
) -> Reconstructor:
    """Load a registered model (or a fastrecon checkpoint file) ready to reconstruct.

    Args:
        name: a registered name (``fastrecon.list_models()``) or the path of a ``.safetensors``
            checkpoint written by fastrecon (its config travels in the file).
        weights: ``"auto"`` (bundled zoo, then ``$FASTRECON_HOME/<name>.safetensors``), a file path
            (fastrecon safetensors, or a fastMRI VarNet ``.pt`` state dict for ``varnet-*``), or
            ``None`` for random initialisation (with a warning).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default CUDA when available.
        backend: ``"eager"`` (the fp32 reference), ``"triton"`` (fused data-consistency kernels),
            ``"compile"`` (torch.compile; CUDA graphs on GPU), ``"onnxruntime"`` or ``"tensorrt"``
            (see ``fastrecon.export.list_backends()``).
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` for the networks (encoder, decoders, U-Nets);
            data consistency always runs in complex64. A backend refuses a precision it cannot honour.
        encoder_weights: for ``weights=None`` ViT models, a local open_clip/timm checkpoint for the
            frozen encoder (how training starts from pretrained encoders).
        batch_size: slices per forward pass (default: as many as ``max_memory`` holds, from an estimate
            of this model's activation memory per slice of the input's shape; at most 16).
        max_memory: activation memory the default batch may use: bytes, or a string such as ``"4GiB"``
            or ``"512MB"``. Default: half the GPU's total memory less the weights on CUDA; 1/16 of
            physical memory, at most 512 MiB, on CPU. Ignored when ``batch_size`` is given.
        dc: data-consistency form: ``"auto"`` (the 2-D reference on ``eager``; on other backends the
            fastest exact form for the mask), ``"2d"``, ``"hybrid"`` or ``"residual"`` (the last two
            need masks that select whole phase-encode columns; all three agree to fp32 rounding).

    ``name`` may also be a folder written by ``fastrecon export`` (``fastrecon.export.artifact``).
    """
    if not isinstance(name, str | os.PathLike):
        raise InputTypeError(
            f"model name is {name!r} ({type(name).__name__}); expected a registered name "
            "(fastrecon.list_models()) or the path of a .safetensors checkpoint."
        )
    # --- exported artifact (fastrecon export -o DIR): its own loader; see fastrecon.export.artifact ---
    from fastrecon.export.artifact import is_artifact, load_artifact
    from fastrecon.registry import list_models

    memory_limit = None if max_memory is None else parse_memory(max_memory)
    if not (isinstance(name, str) and name in list_models()) and is_artifact(name):
        artifact = load_artifact(
            name, device=device, backend=backend, precision=precision, batch_size=batch_size
        )
        return dataclasses.replace(artifact, max_memory=memory_limit)
    # --- end exported artifact ---
    check_precision(get_backend(backend), precision)
    check_dc(dc, backend)
    batch_size = _check_batch(batch_size)
    resolved = _resolve_device(device)
    path_like = Path(name)
    if isinstance(name, os.PathLike) or (str(name).endswith(".safetensors") and path_like.is_file()):
        config, state = _weights.read_checkpoint(path_like)
        location: _weights.WeightsLocation | None = _weights.WeightsLocation(path=path_like, kind="fastrecon")
    else:
        config = get_config(str(name))
        location = _weights.locate_weights(config, weights)
        state = None
    # The random-weights warning comes once, from locate_weights; a checkpoint carries its own encoder.
    if location is not None and location.path is not None:
        if state is None and location.kind == "fastmri":
            if config.family != "varnet":
                raise _weights.WeightsError(
                    f"{str(location.path)!r} looks like a fastMRI state dict, which only fits varnet-* models, not {config.name!r}."
                )
            state = _weights.read_fastmri_state_dict(location.path)
        elif state is None:
            if (
                location.searched
            ):  # the registry's own file (bundled or $FASTRECON_HOME): its checksum must hold
                _weights.verify_sha256(config, location.path)
            file_config, state = _weights.read_checkpoint(location.path)
            if file_config.family != config.family or file_config.num_cascades != config.num_cascades:
                raise _weights.WeightsError(
                    f"{str(location.path)!r} holds a {file_config.family} model {file_config.name!r} with "
                    f"{file_config.num_cascades} cascades; {config.name!r} expects {config.family} with {config.num_cascades}."
                )
        # Built on the meta device and filled from the file: no random init, shapes checked first.
        model = _weights.build_from_checkpoint(config, state, source=str(location.path), device=resolved)
    else:
        model = build_model(
            config,
            encoder_weights=str(encoder_weights) if encoder_weights else None,
            warn_random_encoder=False,
        )
    model.eval().to(resolved)
    runner = prepare_runner(model, backend, resolved, precision, dc)
    return Reconstructor(
        model=model,
        config=config,
        device=resolved,
        runner=runner,
        backend=backend,
        precision=precision,
        weights_path=location.path if location else None,
        batch_size=batch_size,
        max_memory=memory_limit,
    )
