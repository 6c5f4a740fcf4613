"""Checkpoints: self-contained safetensors files with the model config in their metadata.

A deployable checkpoint holds every tensor the model needs, the frozen encoder included (scanners
are offline), and ``config.to_json()`` under the metadata key ``fastrecon_config``. Nothing here
unpickles arbitrary objects: fastMRI's ``.pt`` state dicts are read with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

from fastrecon._files import atomic_write, check_output
from fastrecon.errors import ConfigError, FastreconError, InputError, InputTypeError, WeightsError
from fastrecon.registry import ModelConfig

if TYPE_CHECKING:
    from fastrecon.models.unrolled import UnrolledNet

CONFIG_KEY = "fastrecon_config"
ZOO_DIR = Path(__file__).parent / "zoo"

WeightsArg = str | os.PathLike[str] | Literal["auto"] | None


def fastrecon_home() -> Path:
    """Where downloaded/trained checkpoints live: ``$FASTRECON_HOME`` or ``~/.cache/fastrecon``.

    An empty ``$FASTRECON_HOME`` counts as unset; one that cannot be expanded (``~nosuchuser``) raises
    :class:`~fastrecon.errors.ConfigError`.
    """
    value = os.environ.get("FASTRECON_HOME", "")
    try:
        return Path(value).expanduser() if value else Path.home() / ".cache" / "fastrecon"
    except RuntimeError as exc:  # pathlib: unknown user or no home folder
        raise ConfigError(
            f"FASTRECON_HOME is {value!r}, which cannot be expanded ({exc}); expected a folder path."
        ) from None


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(
    model: nn.Module,
    config: ModelConfig,
    path: str | os.PathLike[str],
    *,
    dtype: torch.dtype | None = None,
    metadata: dict[str, str] | None = None,
    overwrite: bool = True,
) -> str:
    """Write ``model``'s state dict and ``config`` to a safetensors file; returns its sha256.

    ``dtype`` (e.g. ``torch.float16``) stores floating tensors at lower precision to halve the
    file; they are cast back to the model's dtype on load. The file is written to a temporary file
    beside ``path`` and renamed onto it, so a crash never leaves half a checkpoint or loses the old
    one; an existing file is replaced only when ``overwrite`` is true
    (otherwise :class:`~fastrecon.errors.OutputExistsError`).
    """
    from safetensors.torch import save_file

    tensors = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu()
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        tensors[key] = value.contiguous().clone()  # clone: shared storage is not allowed by safetensors
    meta = {CONFIG_KEY: config.to_json(), "format": "pt"}
    meta.update(metadata or {})
    path = check_output(path, overwrite=overwrite)
    with atomic_write(path, overwrite=overwrite) as temp:
        save_file(tensors, str(temp), metadata=meta)
        digest = sha256_file(temp)
    return digest


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """Config and tensors of a fastrecon safetensors checkpoint, with clear errors for bad files.

    Nothing the file's config describes is built and no tensor is read before the config passes its
    checks (:class:`~fastrecon.errors.ConfigError`) and the tensor shapes in the file's header match
    the shapes the config implies (:class:`~fastrecon.errors.WeightsError`; the comparison builds the
    model on the meta device, which takes no memory).
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint {str(path)!r} does not exist.")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            if CONFIG_KEY not in meta:
                raise WeightsError(
                    f"{str(path)!r} has no {CONFIG_KEY!r} metadata: it was not written by fastrecon.save_checkpoint. "
                    f"Metadata keys found: {sorted(meta)}."
                )
            try:
                config = ModelConfig.from_json(meta[CONFIG_KEY])
            except ConfigError as exc:
                raise ConfigError(f"{str(path)!r} carries a config fastrecon refuses: {exc}") from None
            keys = list(handle.keys())  # noqa: SIM118 - safe_open has no __iter__
            shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in keys}
            problem = _shape_mismatch(shapes, expected_state_shapes(config))
            if problem:
                raise WeightsError(
                    f"{str(path)!r} does not hold the tensors its own config {config.name!r} implies ({problem}); "
                    "nothing was built."
                )
            tensors = {key: handle.get_tensor(key) for key in keys}
    except (SafetensorError, OSError, ValueError) as exc:
        if isinstance(exc, FastreconError):
            raise
        raise WeightsError(f"{str(path)!r} is not a readable safetensors checkpoint ({exc}).") from exc
    return config, tensors


def expected_state_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Shape of every tensor in the state dict of ``config``'s model, from a meta-device build (no memory)."""
    from fastrecon.models import build_empty_model

    return {key: tuple(value.shape) for key, value in build_empty_model(config).state_dict().items()}


def build_from_checkpoint(
    config: ModelConfig,
    state: Mapping[str, torch.Tensor],
    *,
    source: str = "checkpoint",
    device: str | torch.device | None = None,
) -> UnrolledNet:
    """The model ``config`` describes, with its weights from ``state``, built without a random initialisation.

    The architecture is built on the meta device first (no memory, no initialisation); ``state``'s keys
    and shapes are compared with it (:class:`~fastrecon.errors.WeightsError` naming the mismatches, and
    nothing big is allocated); then ``state``'s tensors are cast to the model's dtypes, moved to
    ``device`` (default: the CPU) and assigned as the model's parameters and buffers; the constants that
    checkpoints do not store (the encoder's normalisation ``mean``/``std``) are recomputed from the
    config. The frozen encoder keeps ``requires_grad=False``. ``source`` names the weights in messages.

    The model is returned in eval mode. ``state`` may be a fastrecon checkpoint's tensors
    (:func:`read_checkpoint`) or a converted fastMRI state dict (:func:`read_fastmri_state_dict`); its
    tensors may be reused by the model (no copy when dtype and device already match).
    """
    from fastrecon.models import build_empty_model, materialize_buffers

    config = config.validated()
    target = torch.device(device) if device is not None else torch.device("cpu")
    if target.type == "meta":
        raise InputError(f"device is {str(target)!r}; expected a device that holds data (cpu, cuda, ...).")
    model = build_empty_model(config)
    problem = state_dict_mismatch(state, model)
    if problem:
        raise WeightsError(f"weights from {source} do not fit the model ({problem}).")
    expected = model.state_dict()
    bad = [key for key, value in state.items() if not isinstance(value, torch.Tensor) or value.is_meta]
    if bad:
        raise WeightsError(f"weights from {source} have entries that are not tensors with data: {bad[:5]}.")
    model.load_state_dict(
        {key: value.to(device=target, dtype=expected[key].dtype) for key, value in state.items()},
        strict=True,
        assign=True,
    )
    materialize_buffers(model, target)
    return model.eval()


def _shape_mismatch(
    found: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]]
) -> str | None:
    """:func:`state_dict_mismatch` on shapes only (a file's header against a meta model)."""
    return _describe_mismatch(
        missing=[k for k in expected if k not in found],
        unexpected=[k for k in found if k not in expected],
        wrong_shape=[
            f"{k}: checkpoint {found[k]} vs model {expected[k]}"
            for k in expected
            if k in found and tuple(found[k]) != tuple(expected[k])
        ],
    )


def state_dict_mismatch(state: Mapping[str, torch.Tensor], model: nn.Module) -> str | None:
    """How ``state`` fails to fit ``model`` (missing / unexpected keys, wrong shapes), or None if it fits."""
    expected = model.state_dict()
    return _shape_mismatch(
        {k: tuple(getattr(v, "shape", ())) for k, v in state.items()},
        {k: tuple(v.shape) for k, v in expected.items()},
    )


def _describe_mismatch(missing: list[str], unexpected: list[str], wrong_shape: list[str]) -> str | None:
    def listing(items: list[str]) -> str:
        more = f", ... ({len(items) - 5} more)" if len(items) > 5 else ""
        return "[" + ", ".join(repr(item) for item in items[:5]) + more + "]"

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys {listing(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys {listing(unexpected)}")
    if wrong_shape:
        parts.append(f"{len(wrong_shape)} shape mismatches {listing(wrong_shape)}")
    return "; ".join(parts) or None


def load_state_dict_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model``; mismatched keys or shapes raise :class:`WeightsError` naming them."""
    problem = state_dict_mismatch(state, model)
    if problem:
        raise WeightsError(f"weights from {source} do not fit the model ({problem}).")
    expected = model.state_dict()
    model.load_state_dict({key: value.to(expected[key].dtype) for key, value in state.items()}, strict=True)


@dataclass(frozen=True)
class WeightsLocation:
    """Where a model's weights were found (or ``path=None`` for random initialisation)."""

    path: Path | None
    kind: Literal["fastrecon", "fastmri", "random"]
    searched: tuple[str, ...] = ()


def candidate_paths(config: ModelConfig) -> list[Path]:
    """The places ``weights="auto"`` looks, in order: the package's bundled zoo, then ``$FASTRECON_HOME``."""
    paths = []
    if config.weights.bundled:
        paths.append(ZOO_DIR / config.weights.filename)
    paths.append(fastrecon_home() / config.weights.filename)
    return paths


def locate_weights(config: ModelConfig, weights: WeightsArg) -> WeightsLocation:
    """Resolve the ``weights`` argument of :func:`fastrecon.load`.

    ``None`` -> random initialisation (with a warning); a path -> that file (``.pt``/``.pth`` are
    fastMRI state dicts, anything else a fastrecon safetensors checkpoint); ``"auto"`` -> the
    bundled zoo, then ``$FASTRECON_HOME/<name>.safetensors``; nothing found -> :class:`WeightsError`
    saying where it looked and how to get weights.
    """
    if weights is not None and (isinstance(weights, bool) or not isinstance(weights, str | os.PathLike)):
        raise InputTypeError(
            f"weights is {weights!r} ({type(weights).__name__}); expected 'auto', the path of a weights file, "
            "or None for random initialisation."
        )
    if isinstance(weights, str) and not weights.strip():
        raise InputError(
            f"weights is {weights!r}; expected 'auto', the path of a weights file, or None for random initialisation."
        )
    if weights is None:
        warnings.warn(
            f"model {config.name!r} is randomly initialised (weights=None): its output is not a reconstruction "
            "anyone should read. Use it for tests, shapes and timing only.",
            UserWarning,
            stacklevel=3,
        )
        return WeightsLocation(path=None, kind="random")
    if isinstance(weights, str) and weights == "auto":
        searched = candidate_paths(config)
        for path in searched:
            if path.is_file():
                return WeightsLocation(path=path, kind="fastrecon", searched=tuple(map(str, searched)))
        raise WeightsError(
            f"no weights for {config.name!r}: looked in {', '.join(str(p) for p in searched)}. "
            f"Weights status: {config.weights.provenance}. Get weights by training "
            f"(`fastrecon train --model {config.name} ...` writes {config.weights.filename}; put it in "
            f"$FASTRECON_HOME), by passing a file (`weights='path.safetensors'`, or a fastMRI VarNet `.pt` state dict "
            "for varnet-*), or use weights=None for a randomly initialised model."
        )
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsError(f"weights file {str(path)!r} does not exist.")
    kind: Literal["fastrecon", "fastmri"] = (
        "fastmri" if path.suffix in (".pt", ".pth", ".ckpt") else "fastrecon"
    )
    return WeightsLocation(path=path, kind=kind)


def verify_sha256(config: ModelConfig, path: Path) -> None:
    """Check the file against the registry's pinned sha256, when one is pinned."""
    pinned = config.weights.sha256
    if pinned is None:
        return
    actual = sha256_file(path)
    if actual != pinned:
        raise WeightsError(
            f"{str(path)!r} has sha256 {actual}, but the registry pins {pinned} for {config.name!r}: "
            "the file is corrupt or not the published one."
        )


def read_fastmri_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A fastMRI VarNet state dict (plain, Lightning or DDP) read safely and mapped to our keys."""
    from fastrecon.models.fastmri_compat import convert_fastmri_state_dict

    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises several unrelated types for bad files
        raise WeightsError(
            f"could not read {str(path)!r} as a torch state dict with weights_only=True ({exc}). Lightning checkpoints "
            "that pickle hyper-parameters are refused for safety: re-save just the weights with "
            "torch.save(torch.load(path, weights_only=False)['state_dict'], 'varnet_state_dict.pt') on a machine you trust."
        ) from exc
    return convert_fastmri_state_dict(obj)
