"""E2E-VarNet: parameter count, fastMRI state-dict loading and output parity with fastMRI's own code."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch

from fastrecon.errors import InputError, InputTypeError, WeightsError
from fastrecon.models import build_model
from fastrecon.models.fastmri_compat import (
    check_state_dict,
    convert_fastmri_state_dict,
    infer_varnet_kwargs,
    load_fastmri_state_dict,
)
from fastrecon.models.unet import NormUnet
from fastrecon.models.varnet import VarNet, VarNetCascade
from fastrecon.registry import get_config

from . import _fastmri_oracle as fm

FASTMRI_PARAMETERS = 29_936_966
SMALL = {"num_cascades": 2, "sens_chans": 8, "sens_pools": 4, "chans": 8, "pools": 4}
# The brief asks for < 1e-4; measured ~4e-8 (fp32, CPU), so 1e-5 keeps a wide margin and still catches
# subtle slips (a biased std in NormUnet gives ~1.4e-4).
TOL = 1e-5


def _oracle(**kwargs: Any) -> fm.VarNet:
    """A random fastMRI VarNet with non-trivial DC weights (fastMRI initialises them all to 1)."""
    model = fm.VarNet(**kwargs).eval()
    with torch.no_grad():
        for t, cascade in enumerate(model.cascades):
            assert isinstance(cascade, fm.VarNetBlock)
            cascade.dc_weight.fill_(0.3 + 0.25 * t)
    return model


def _roundtrip(obj: object, tmp_path: Path) -> object:
    """What a user's ``torch.save`` file gives back under ``weights_only=True``."""
    path = tmp_path / "checkpoint.pt"
    torch.save(obj, path)
    return torch.load(path, map_location="cpu", weights_only=True)


def _ours_from(oracle: fm.VarNet, tmp_path: Path, **kwargs: int) -> VarNet:
    ours = VarNet(**kwargs).eval()
    loaded = _roundtrip(oracle.state_dict(), tmp_path)
    assert isinstance(loaded, dict)
    ours.load_state_dict(convert_fastmri_state_dict(loaded), strict=True)
    return ours


def _run_both(
    oracle: fm.VarNet, ours: VarNet, coils: int, height: int, width: int, n: int = 2
) -> tuple[torch.Tensor, ...]:
    mask = fm.column_mask(width, accel=4, acs=8)
    kspace = fm.masked_kspace(n, coils, height, width, mask)
    with torch.no_grad():
        expected = oracle(*fm.to_oracle(kspace, mask))
        actual = ours(kspace, mask)
    return actual, expected, kspace, mask


def _close_to_oracle(actual: torch.Tensor, expected: torch.Tensor) -> bool:
    """Relative L2 error below TOL and worst pixel error below 10 TOL of the image maximum."""
    err = fm.rel_err(actual, expected)
    worst = float((actual - expected).abs().max() / expected.abs().max())
    assert err < TOL, f"relative L2 error {err:.2e} >= {TOL:.0e}"
    assert worst < 10 * TOL, f"max abs error {worst:.2e} of the max >= {10 * TOL:.0e}"
    return True


# --- architecture ---------------------------------------------------------------------------------


def test_default_parameter_count_and_keys_equal_fastmri() -> None:
    ours = VarNet()
    assert sum(p.numel() for p in ours.parameters()) == FASTMRI_PARAMETERS
    reference = {k: tuple(v.shape) for k, v in fm.VarNet().state_dict().items()}
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == reference
    assert all(isinstance(c, VarNetCascade) for c in ours.cascades)


def test_from_config_builds_the_registered_baseline() -> None:
    model = build_model(get_config("varnet-x8"))
    assert isinstance(model, VarNet)
    assert len(model.cascades) == 12
    assert sum(p.numel() for p in model.parameters()) == FASTMRI_PARAMETERS
    assert model.sens_net.min_acs_lines == get_config("varnet-x8").contract.min_acs_lines


def test_from_config_rejects_other_families() -> None:
    with pytest.raises(InputError, match="family 'vit_unrolled'"):
        VarNet.from_config(get_config("clip-x8"))


# --- parity with fastMRI --------------------------------------------------------------------------


@pytest.mark.parametrize(("coils", "height", "width"), [(4, 32, 24), (3, 37, 29)])
def test_small_varnet_matches_fastmri(tmp_path: Path, coils: int, height: int, width: int) -> None:
    oracle = _oracle(**SMALL)
    ours = _ours_from(oracle, tmp_path, **SMALL)
    actual, expected, kspace, _ = _run_both(oracle, ours, coils, height, width)
    assert actual.shape == expected.shape == (2, height, width)
    assert actual.dtype == torch.float32
    assert _close_to_oracle(actual, expected)
    # The cascades did something: the output is far from the zero-filled RSS.
    zero_filled = fm.rss(fm.complex_abs(fm.ifft2c(torch.view_as_real(kspace))), dim=1)
    assert fm.rel_err(actual, zero_filled) > 1e-2


def test_default_size_varnet_matches_fastmri(tmp_path: Path) -> None:
    oracle = _oracle()
    ours = _ours_from(oracle, tmp_path)
    actual, expected, _, _ = _run_both(oracle, ours, coils=4, height=64, width=48, n=1)
    assert _close_to_oracle(actual, expected)


def test_parity_check_is_sensitive_to_one_weight(tmp_path: Path) -> None:
    """Negative control: a single perturbed weight must break the parity the tests above check."""
    oracle = _oracle(**SMALL)
    ours = _ours_from(oracle, tmp_path, **SMALL)
    cascade = ours.cascades[1]
    assert isinstance(cascade, VarNetCascade)
    with torch.no_grad():
        cascade.dc_weight.add_(0.5)
    actual, expected, _, _ = _run_both(oracle, ours, 4, 32, 24)
    assert fm.rel_err(actual, expected) > 1e-3


def test_mask_layouts_give_the_same_image() -> None:
    ours = VarNet(num_cascades=2, sens_chans=4, sens_pools=2, chans=4, pools=2).eval()
    mask = fm.column_mask(24)
    kspace = fm.masked_kspace(2, 3, 32, 24, mask)
    with torch.no_grad():
        one_d = ours(kspace, mask)
        two_d = ours(kspace, mask.expand(32, 24))
        four_d = ours(kspace, mask.reshape(1, 1, 1, 24).expand(2, 1, 1, 24))
    torch.testing.assert_close(two_d, one_d, rtol=0, atol=0)
    torch.testing.assert_close(four_d, one_d, rtol=0, atol=0)


def test_gradients_reach_every_parameter() -> None:
    ours = VarNet(num_cascades=2, sens_chans=4, sens_pools=2, chans=4, pools=2)
    mask = fm.column_mask(24)
    ours(fm.masked_kspace(1, 2, 16, 24, mask), mask).sum().backward()
    no_grad = [n for n, p in ours.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert no_grad == []


# --- NormUnet ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("height", "width"), [(32, 24), (21, 19)])
def test_normunet_complex_matches_fastmri(height: int, width: int) -> None:
    oracle = fm.NormUnet(6, 3).eval()
    ours = NormUnet(6, 3).eval()
    ours.load_state_dict(oracle.state_dict(), strict=True)
    image = torch.randn(3, height, width, dtype=torch.complex64) * 1e-4 + 2e-5j
    with torch.no_grad():
        expected = torch.view_as_complex(oracle(torch.view_as_real(image).unsqueeze(1)).squeeze(1))
        actual = ours(image)
        chan = ours.forward_chan(torch.view_as_real(image).unsqueeze(1))
    assert actual.dtype == torch.complex64 and actual.shape == image.shape
    assert fm.rel_err(actual, expected) < 1e-6
    torch.testing.assert_close(torch.view_as_complex(chan.squeeze(1)), actual, rtol=0, atol=0)


def test_normunet_maps_zero_to_zero_and_rejects_real_input() -> None:
    ours = NormUnet(4, 2).eval()
    with torch.no_grad():
        out = ours(torch.zeros(2, 16, 16, dtype=torch.complex64))
    assert torch.equal(out, torch.zeros_like(out))
    with pytest.raises(InputTypeError, match="complex"):
        ours(torch.zeros(2, 16, 16))
    with pytest.raises(InputError, match=r"\(B, H, W\)"):
        ours(torch.zeros(2, 1, 16, 16, dtype=torch.complex64))


# --- fastMRI checkpoint formats ---------------------------------------------------------------------


def _small_state() -> dict[str, torch.Tensor]:
    return _oracle(**SMALL).state_dict()


def _assert_same_tensors(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert list(actual) == list(expected)
    for key, value in expected.items():
        assert torch.equal(actual[key], value), key


def test_lightning_checkpoint_converts(tmp_path: Path) -> None:
    state = _small_state()
    checkpoint = {
        "epoch": 7,
        "global_step": 1234,
        "state_dict": {**{f"varnet.{k}": v for k, v in state.items()}, "loss.w": torch.ones(1, 1, 7, 7) / 49},
        "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 1e-3}]}],
        "lr_schedulers": [{"step_size": 40, "gamma": 0.1}],
    }
    loaded = _roundtrip(checkpoint, tmp_path)
    assert isinstance(loaded, dict)
    _assert_same_tensors(convert_fastmri_state_dict(loaded, model=VarNet(**SMALL)), state)


def test_ddp_and_compiled_prefixes_convert(tmp_path: Path) -> None:
    state = _small_state()
    ddp = _roundtrip({f"module.{k}": v for k, v in state.items()}, tmp_path)
    assert isinstance(ddp, dict)
    _assert_same_tensors(convert_fastmri_state_dict(ddp), state)
    lightning_ddp = {"state_dict": {f"module.varnet.{k}": v for k, v in state.items()}}
    _assert_same_tensors(convert_fastmri_state_dict(lightning_ddp), state)
    compiled = {f"_orig_mod.{k}": v for k, v in state.items()}
    _assert_same_tensors(convert_fastmri_state_dict(compiled), state)


def test_load_helper_loads_strictly(tmp_path: Path) -> None:
    oracle = _oracle(**SMALL)
    ours = load_fastmri_state_dict(
        VarNet(**SMALL), {"state_dict": {f"varnet.{k}": v for k, v in oracle.state_dict().items()}}
    )
    cascade = ours.cascades[1]
    assert isinstance(cascade, VarNetCascade)
    assert cascade.dc_weight.detach().item() == pytest.approx(0.55)


def test_infer_kwargs_from_checkpoint() -> None:
    assert infer_varnet_kwargs(_small_state()) == SMALL
    assert infer_varnet_kwargs(VarNet().state_dict()) == {
        "num_cascades": 12,
        "sens_chans": 8,
        "sens_pools": 4,
        "chans": 18,
        "pools": 4,
    }


def test_wrong_architecture_names_shapes_and_implied_size() -> None:
    state = convert_fastmri_state_dict(_small_state())
    with pytest.raises(WeightsError) as info:
        convert_fastmri_state_dict(state, model=VarNet())  # 12 cascades, chans 18
    message = str(info.value)
    assert "missing keys" in message and "'cascades.2.dc_weight'" in message
    assert (
        "shape mismatches" in message
        and "cascades.0.model.unet.down_sample_layers.0.layers.0.weight" in message
    )
    assert "checkpoint (8, 2, 3, 3) vs model (18, 2, 3, 3)" in message
    assert "VarNet(num_cascades=2, sens_chans=8, sens_pools=4, chans=8, pools=4)" in message


def test_missing_and_unexpected_keys_are_named() -> None:
    state = dict(_small_state())
    del state["cascades.1.dc_weight"]
    state["cascades.0.extra"] = torch.zeros(1)
    with pytest.raises(WeightsError) as info:
        check_state_dict(state, VarNet(**SMALL))
    message = str(info.value)
    assert re.search(r"1 missing keys \['cascades\.1\.dc_weight'\]", message)
    assert re.search(r"1 unexpected keys \['cascades\.0\.extra'\]", message)


def test_non_varnet_dicts_are_rejected_clearly() -> None:
    with pytest.raises(WeightsError, match=r"no E2E-VarNet parameters found.*'encoder\.weight'"):
        convert_fastmri_state_dict({"encoder.weight": torch.zeros(2), "epoch": 3})
    with pytest.raises(WeightsError, match="must be a dict"):
        convert_fastmri_state_dict([torch.zeros(2)])  # type: ignore[arg-type]
    with pytest.raises(WeightsError, match="both map to VarNet key 'cascades.0.dc_weight'"):
        convert_fastmri_state_dict(
            {"cascades.0.dc_weight": torch.ones(1), "module.cascades.0.dc_weight": torch.ones(1)}
        )
