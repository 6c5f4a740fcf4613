"""fastrecon.load(...).reconstruct(...): input adaptation, outputs, errors, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fastrecon
from fastrecon import register
from fastrecon.errors import (
    BackendUnavailableError,
    InputError,
    InputTypeError,
    UnknownNameError,
    WeightsError,
)
from fastrecon.models import build_model
from fastrecon.physics import ifft2c, rss
from fastrecon.registry import _REGISTRY
from fastrecon.weights import save_checkpoint, sha256_file
from tests.helpers import masked_kspace, replace, tiny_varnet_config, tiny_vit_config


@pytest.fixture(scope="module")
def tiny_names() -> list[str]:
    configs = [tiny_vit_config(), tiny_varnet_config()]
    for config in configs:
        register(config, overwrite=True)
    yield [c.name for c in configs]
    for config in configs:
        _REGISTRY.pop(config.name, None)


def randomise(model: torch.nn.Module) -> None:
    """Give zero-initialised layers (the ViT heads) random values so outputs differ from zero-filled."""
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad and bool((param == 0).all()):
                param.normal_(0, 0.05)


@pytest.fixture(scope="module")
def vit_recon(tiny_names: list[str]) -> fastrecon.Reconstructor:
    with pytest.warns(UserWarning, match="randomly initialised"):
        recon = fastrecon.load(tiny_names[0], weights=None, device="cpu")
    randomise(recon.model)
    return recon


def test_numpy_single_slice(vit_recon: fastrecon.Reconstructor) -> None:
    k, _ = masked_kspace(num=1)
    out = vit_recon.reconstruct(k[0].numpy())
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (32, 24)
    assert np.isfinite(out).all()
    zero_filled = rss(ifft2c(k[0:1]), dim=1)[0].numpy()
    assert not np.allclose(out, zero_filled, atol=1e-3), "random heads should change the image"


def test_torch_batch_and_dtypes_agree(vit_recon: fastrecon.Reconstructor) -> None:
    k, mask = masked_kspace(num=3)
    out = vit_recon.reconstruct(k)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (3, 32, 24)
    # complex128 in: the output keeps double precision (the model itself runs in complex64).
    double = vit_recon.reconstruct(k.to(torch.complex128))
    assert double.dtype == torch.float64
    torch.testing.assert_close(double, out, check_dtype=False)
    torch.testing.assert_close(vit_recon.reconstruct(torch.view_as_real(k)), out)
    torch.testing.assert_close(vit_recon.reconstruct(k, mask), out)
    torch.testing.assert_close(vit_recon.reconstruct(k, mask.numpy().astype(np.float32)), out)
    torch.testing.assert_close(vit_recon.reconstruct(k, batch_size=1), out, rtol=1e-5, atol=1e-6)
    one = vit_recon.reconstruct(k[1])
    torch.testing.assert_close(one, out[1], rtol=1e-5, atol=1e-6)


def test_mask_zeroes_unsampled_entries(vit_recon: fastrecon.Reconstructor) -> None:
    k, mask = masked_kspace(num=1)
    full = k + (~mask) * torch.randn_like(k)  # junk where the mask says "not measured"
    torch.testing.assert_close(vit_recon.reconstruct(full, mask), vit_recon.reconstruct(k, mask))


def test_2d_mask(vit_recon: fastrecon.Reconstructor) -> None:
    k, mask = masked_kspace(num=1)
    mask2d = mask.expand(32, 24).clone()
    torch.testing.assert_close(vit_recon.reconstruct(k, mask2d), vit_recon.reconstruct(k, mask))


def test_return_complex_is_combined_image(vit_recon: fastrecon.Reconstructor) -> None:
    k, mask = masked_kspace(num=2)
    image = vit_recon.reconstruct(k, return_complex=True)
    assert image.dtype == torch.complex64 and image.shape == (2, 32, 24)
    with torch.no_grad():
        expected = vit_recon.model.unroll(k, mask).combined_image()
    torch.testing.assert_close(image, expected)
    # Maps are RSS-normalised, so by Cauchy-Schwarz |sum_c conj(S_c) x_c| <= RSS(x) pixel by pixel.
    magnitude = vit_recon.reconstruct(k)
    assert bool((image.abs() <= magnitude * (1 + 1e-5) + 1e-6).all())
    assert float(image.abs().max()) > 0.1 * float(magnitude.max())


def test_untrained_vit_returns_zero_filled(tiny_names: list[str]) -> None:
    with pytest.warns(UserWarning):
        recon = fastrecon.load(tiny_names[0], weights=None, device="cpu")
    k, _ = masked_kspace(num=2)
    torch.testing.assert_close(recon.reconstruct(k), rss(ifft2c(k), dim=1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("make_input", "error", "match"),
    [
        (lambda k: k[0, 0], InputError, "2 dimensions"),
        (lambda k: k.unsqueeze(0), InputError, "5 dimensions"),
        (lambda k: k.real.contiguous(), InputTypeError, "complex64"),
        (lambda k: torch.where(k.abs() > 0, k, torch.tensor(float("nan"), dtype=k.dtype)), InputError, "NaN"),
        (lambda k: k[:, :0], InputError, "empty dimension"),
        (lambda k: torch.zeros_like(k), InputError, "all zeros"),
        (lambda k: k * (torch.arange(24) % 4 == 0), InputError, "ACS"),
        (lambda k: k.tolist(), InputTypeError, "numpy array, torch tensor or CuPy"),
        (lambda k: k.abs().to(torch.int32), InputTypeError, "int32"),
    ],
)
def test_bad_inputs(vit_recon: fastrecon.Reconstructor, make_input, error, match) -> None:  # type: ignore[no-untyped-def]
    k, _ = masked_kspace(num=1)
    with pytest.raises(error, match=match):
        vit_recon.reconstruct(make_input(k))


@pytest.mark.parametrize(
    ("mask", "match"),
    [
        (torch.ones(23, dtype=torch.bool), "W=24"),
        (torch.ones(31, 24, dtype=torch.bool), r"\(H, W\) = \(32, 24\)"),
        (torch.ones(2, 32, 24, dtype=torch.bool), "expected"),
        (torch.ones(24, dtype=torch.complex64), "complex"),
        (
            torch.ones(2, 1, 1, 24, dtype=torch.bool),
            r"2 per-slice masks for 1 slice",
        ),  # broadcasts, yet 1 used
    ],
)
def test_bad_masks(vit_recon: fastrecon.Reconstructor, mask: torch.Tensor, match: str) -> None:
    k, _ = masked_kspace(num=1)
    with pytest.raises(InputError, match=match):
        vit_recon.reconstruct(k, mask)


def test_unknown_backend_precision_device(tiny_names: list[str]) -> None:
    with pytest.raises(
        UnknownNameError, match="Available: compile, eager, onnxruntime, tensorrt, triton.*'tensorrt'"
    ):
        fastrecon.load(tiny_names[0], weights=None, backend="tensorrtt")
    with pytest.raises(UnknownNameError, match="precision 'fp8'"):
        fastrecon.load(tiny_names[0], weights=None, precision="fp8")
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailableError, match="no CUDA"):
            fastrecon.load(tiny_names[0], weights=None, device="cuda")


def test_checkpoint_round_trip(tiny_names: list[str], tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    config = fastrecon.get_config(tiny_names[0])
    torch.manual_seed(3)
    model = build_model(config)
    randomise(model)
    path = tmp_path / f"{config.name}.safetensors"
    digest = save_checkpoint(model, config, path)
    assert digest == sha256_file(path) and len(digest) == 64
    k, mask = masked_kspace(num=2)
    with torch.no_grad():
        expected = model.eval()(k, mask)
    # By path (config read from the file), by name + weights=path, and by name via $FASTRECON_HOME.
    torch.testing.assert_close(fastrecon.load(path).reconstruct(k), expected, rtol=0, atol=0)
    torch.testing.assert_close(
        fastrecon.load(config.name, weights=path).reconstruct(k), expected, rtol=0, atol=0
    )
    monkeypatch.setenv("FASTRECON_HOME", str(tmp_path))
    recon = fastrecon.load(config.name)
    assert recon.weights_path == path
    torch.testing.assert_close(recon.reconstruct(k), expected, rtol=0, atol=0)
    # A pinned checksum that does not match is refused.
    pinned = replace(config, weights=replace(config.weights, sha256="0" * 64))  # type: ignore[arg-type]
    register(pinned, overwrite=True)
    try:
        with pytest.raises(WeightsError, match="sha256"):
            fastrecon.load(config.name)
    finally:
        register(config, overwrite=True)


def test_fp16_storage_round_trip(tiny_names: list[str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = fastrecon.get_config(tiny_names[1])
    model = build_model(config)
    path = tmp_path / "half.safetensors"
    save_checkpoint(model, config, path, dtype=torch.float16)
    save_checkpoint(model, config, tmp_path / "full.safetensors")
    assert path.stat().st_size < 0.6 * (tmp_path / "full.safetensors").stat().st_size
    loaded = fastrecon.load(path)
    for key, value in loaded.model.state_dict().items():
        assert value.dtype == model.state_dict()[key].dtype
        torch.testing.assert_close(value, model.state_dict()[key].to(torch.float16).to(value.dtype))


def test_missing_weights_say_where_and_how(tiny_names: list[str], tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("FASTRECON_HOME", str(tmp_path))
    with pytest.raises(WeightsError, match="looked in") as info:
        fastrecon.load(tiny_names[0])
    message = str(info.value)
    assert str(tmp_path) in message and "fastrecon train" in message and "weights=None" in message


def test_corrupt_and_foreign_checkpoints(tiny_names: list[str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    from safetensors.torch import save_file

    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    with pytest.raises(WeightsError, match="not a readable safetensors"):
        fastrecon.load(tiny_names[0], weights=bad)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(2)}, str(foreign))
    with pytest.raises(WeightsError, match="no 'fastrecon_config' metadata"):
        fastrecon.load(foreign)
    other = tiny_varnet_config()
    wrong = tmp_path / "wrong.safetensors"
    save_checkpoint(build_model(other), other, wrong)
    with pytest.raises(WeightsError, match="varnet"):
        fastrecon.load(tiny_names[0], weights=wrong)


@pytest.mark.gpu
def test_cupy_input_stays_on_device(tiny_names: list[str]) -> None:
    cupy = pytest.importorskip("cupy")
    with pytest.warns(UserWarning):
        recon = fastrecon.load(tiny_names[0], weights=None, device="cuda")
    k, _ = masked_kspace(num=2)
    out = recon.reconstruct(cupy.asarray(k.numpy()))
    assert isinstance(out, cupy.ndarray) and out.dtype == cupy.float32 and out.shape == (2, 32, 24)
    expected = recon.reconstruct(k)
    np.testing.assert_allclose(cupy.asnumpy(out), expected.numpy(), rtol=1e-4, atol=1e-5)


def test_slices_with_different_masks_do_not_share_lines(vit_recon: fastrecon.Reconstructor) -> None:
    full, _ = masked_kspace(num=2, accel=1)  # every column sampled
    masks = torch.zeros(2, 24, dtype=torch.bool)
    masks[0, 0::4] = True
    masks[1, 2::4] = True
    masks[:, 9:15] = True  # shared ACS block
    k = full * masks[:, None, None, :]
    together = vit_recon.reconstruct(k)
    alone = torch.stack([vit_recon.reconstruct(k[i]) for i in range(2)])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-6)
    # The same with the per-slice mask given explicitly, and with junk outside each slice's mask.
    junk = full + (~masks[:, None, None, :]) * torch.randn_like(full)
    explicit = vit_recon.reconstruct(junk, masks[:, None, None, :])
    torch.testing.assert_close(explicit, together, rtol=1e-5, atol=1e-6)


def test_nan_outside_the_mask_is_ignored(vit_recon: fastrecon.Reconstructor) -> None:
    k, mask = masked_kspace(num=1)
    dirty = torch.where(mask, k, torch.tensor(complex("nan+nanj"), dtype=k.dtype))
    torch.testing.assert_close(vit_recon.reconstruct(dirty, mask), vit_recon.reconstruct(k, mask))


def test_read_only_numpy_input_is_fine(vit_recon: fastrecon.Reconstructor) -> None:
    k, _ = masked_kspace(num=1)
    array = k.numpy().copy()
    array.setflags(write=False)
    assert np.isfinite(vit_recon.reconstruct(array)).all()


@pytest.mark.parametrize(
    ("mask", "error", "match"),
    [
        (lambda m: m.to(torch.float32) * 0.5, InputError, "other than 0 and 1"),
        (
            lambda m: torch.where(m, torch.tensor(float("nan")), torch.tensor(0.0)),
            InputError,
            "other than 0 and 1",
        ),
        (
            lambda m: m.expand(32, 24) & (torch.arange(32) == 0)[:, None],
            InputError,
            "ACS",
        ),  # one row is not a line
    ],
)
def test_bad_mask_values(vit_recon: fastrecon.Reconstructor, mask, error, match) -> None:  # type: ignore[no-untyped-def]
    k, m = masked_kspace(num=1)
    with pytest.raises(error, match=match):
        vit_recon.reconstruct(k, mask(m))


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, True])
def test_bad_batch_size(vit_recon: fastrecon.Reconstructor, batch_size: object) -> None:
    k, _ = masked_kspace(num=2)
    with pytest.raises(InputError, match="batch_size"):
        vit_recon.reconstruct(k, batch_size=batch_size)  # type: ignore[arg-type]


def test_unsupported_numpy_dtype(vit_recon: fastrecon.Reconstructor) -> None:
    k, _ = masked_kspace(num=1)
    with pytest.raises(InputTypeError, match="object"):
        vit_recon.reconstruct(k.numpy().astype(object))


@pytest.mark.parametrize("device", ["tpu", "gpu", "", "  ", "meta", "cuda:x", 5, "xla", "mps"])
def test_bad_or_absent_devices_are_refused_with_fastrecon_errors(device: object) -> None:
    from fastrecon.api import _device_available
    from fastrecon.errors import FastreconError

    if isinstance(device, str) and device in ("mps", "xla") and _device_available(device):
        pytest.skip(f"{device} is present here")
    with pytest.raises(FastreconError, match=repr(device) if device != 5 else "5"):
        fastrecon.load("demo-x8", device=device)  # type: ignore[arg-type]


def test_mps_is_accepted_where_torch_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastrecon.api import _resolve_device

    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert _resolve_device("mps") == torch.device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(fastrecon.errors.BackendUnavailableError, match="no mps device"):
        _resolve_device("mps")
