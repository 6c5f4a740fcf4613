"""Map fastMRI E2E-VarNet checkpoints onto :class:`fastrecon.models.varnet.VarNet`.

fastMRI users hold one of:

- a plain ``VarNet.state_dict()`` (the published ``knee_leaderboard_state_dict.pt`` /
  ``brain_leaderboard_state_dict.pt`` files), keys ``sens_net.*`` and ``cascades.*``;
- a PyTorch Lightning checkpoint of ``VarNetModule``: ``{"state_dict": {"varnet.sens_net...": ...},
  "optimizer_states": ..., ...}`` (the module also stores the SSIM loss's ``loss.w`` buffer);
- either of those saved from a ``DistributedDataParallel`` wrapper (``module.`` prefix) or a
  ``torch.compile``'d module (``_orig_mod.`` prefix).

Our VarNet has fastMRI's module tree, so after stripping those prefixes the keys are equal. This
module only maps dictionaries: reading a file is the caller's job (``torch.load(path,
map_location="cpu", weights_only=True)``; never ``weights_only=False``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar

import torch
from torch import nn

from fastrecon.errors import WeightsError

#: Leading prefixes stripped from every key (repeatedly, in any order).
PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.", "varnet.", "model.")
#: Keys under which checkpoints nest the state dict (Lightning: ``state_dict``).
CONTAINER_KEYS: tuple[str, ...] = ("state_dict", "model_state_dict", "model")
#: Every E2E-VarNet key starts with one of these after the prefixes are stripped.
VARNET_ROOTS: tuple[str, ...] = ("sens_net.", "cascades.")

_MAX_LISTED = 8

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def _listing(keys: list[str]) -> str:
    shown = ", ".join(repr(k) for k in keys[:_MAX_LISTED])
    more = f", ... ({len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
    return f"[{shown}{more}]"


def _strip_prefixes(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                stripped = True
    return key


def _unwrap(obj: Any) -> Mapping[str, Any]:
    """The innermost mapping that holds tensors (follows Lightning's ``state_dict`` nesting)."""
    if not isinstance(obj, Mapping):
        raise WeightsError(
            f"a fastMRI checkpoint must be a dict (a state dict or a checkpoint holding 'state_dict'), "
            f"got {type(obj).__name__}."
        )
    for _ in range(4):  # nested at most a few levels in practice
        if any(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
        inner = next((obj[k] for k in CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            return obj
        obj = inner
    return obj


def convert_fastmri_state_dict(
    obj: Mapping[str, Any], model: nn.Module | None = None
) -> dict[str, torch.Tensor]:
    """fastMRI checkpoint contents -> a state dict for our :class:`~fastrecon.models.varnet.VarNet`.

    Args:
        obj: what ``torch.load(..., weights_only=True)`` returned: a plain VarNet state dict, a
            Lightning checkpoint (``{"state_dict": {"varnet.…": …}, …}``), possibly with DDP's
            ``module.`` or ``torch.compile``'s ``_orig_mod.`` prefixes.
        model: when given, the result is checked against ``model.state_dict()`` with
            :func:`check_state_dict` (same keys, same shapes).

    Returns:
        ``{key: tensor}`` with only the ``sens_net.*`` / ``cascades.*`` entries, prefixes stripped.
        Non-VarNet entries (optimizer state, the SSIM loss buffer, hyper-parameters) are dropped.

    Raises:
        WeightsError: no VarNet entries, two entries mapping to the same key, or (with ``model``)
            missing / unexpected keys or shape mismatches.
    """
    source = _unwrap(obj)
    result: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for raw_key, value in source.items():
        if not isinstance(raw_key, str):
            continue
        key = _strip_prefixes(raw_key)
        if not key.startswith(VARNET_ROOTS):
            continue
        if not isinstance(value, torch.Tensor):
            raise WeightsError(
                f"checkpoint entry {raw_key!r} should be a tensor, got {type(value).__name__}."
            )
        if key in result:
            raise WeightsError(
                f"checkpoint entries {origin[key]!r} and {raw_key!r} both map to VarNet key {key!r}; "
                "the checkpoint holds more than one model."
            )
        result[key] = value
        origin[key] = raw_key
    if not result:
        seen = [str(k) for k in source]
        raise WeightsError(
            "no E2E-VarNet parameters found: expected keys starting with "
            f"{' or '.join(repr(r) for r in VARNET_ROOTS)} after stripping the prefixes "
            f"{', '.join(repr(p) for p in PREFIXES)}; the checkpoint has keys {_listing(seen)}."
        )
    if model is not None:
        check_state_dict(result, model)
    return result


def check_state_dict(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> None:
    """Raise :class:`WeightsError` unless ``state_dict`` has exactly ``model``'s keys and shapes.

    The message names the missing and unexpected keys, the shape mismatches and, for VarNet
    checkpoints, the constructor arguments the checkpoint implies.
    """
    from fastrecon.weights import state_dict_mismatch

    problem = state_dict_mismatch(state_dict, model)
    if problem is None:
        return
    hint = ""
    try:
        implied = infer_varnet_kwargs(state_dict)
    except WeightsError:
        pass
    else:
        args = ", ".join(f"{k}={v}" for k, v in implied.items())
        hint = f" The checkpoint looks like VarNet({args})."
    raise WeightsError(
        f"the state dict does not match the {type(model).__name__} it is loaded into: {problem}.{hint}"
    )


_CASCADE_INDEX = re.compile(r"^cascades\.(\d+)\.")
_DOWN_INDEX = re.compile(r"\.unet\.down_sample_layers\.(\d+)\.layers\.0\.weight$")


def infer_varnet_kwargs(state_dict: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """VarNet constructor arguments implied by a converted state dict's keys and shapes.

    Returns ``{"num_cascades", "sens_chans", "sens_pools", "chans", "pools"}``; raises
    :class:`WeightsError` if the U-Net first-layer weights it reads are absent.
    """
    cascades = {int(m.group(1)) for k in state_dict if (m := _CASCADE_INDEX.match(k))}
    if not cascades:
        raise WeightsError("the state dict has no 'cascades.<t>.' entries; cannot infer the VarNet size.")

    def unet_size(prefix: str) -> tuple[int, int]:
        levels = {
            int(m.group(1)): v
            for k, v in state_dict.items()
            if k.startswith(prefix) and (m := _DOWN_INDEX.search(k))
        }
        if 0 not in levels:
            raise WeightsError(
                f"the state dict has no '{prefix}.unet.down_sample_layers.0.layers.0.weight' entry."
            )
        return int(levels[0].shape[0]), len(levels)

    sens_chans, sens_pools = unet_size("sens_net.norm_unet")
    chans, pools = unet_size(f"cascades.{min(cascades)}.model")
    return {
        "num_cascades": max(cascades) + 1,
        "sens_chans": sens_chans,
        "sens_pools": sens_pools,
        "chans": chans,
        "pools": pools,
    }


def load_fastmri_state_dict(model: ModuleT, obj: Mapping[str, Any]) -> ModuleT:
    """Convert ``obj`` (see :func:`convert_fastmri_state_dict`), check it against ``model`` and load it strictly."""
    state_dict = convert_fastmri_state_dict(obj, model=model)
    model.load_state_dict(state_dict, strict=True)
    return model
