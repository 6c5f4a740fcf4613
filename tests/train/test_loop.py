"""Training end to end on simulated data with a tiny config: checkpoint, resume, frozen encoder, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import fastrecon
from fastrecon import register
from fastrecon.cli import main
from fastrecon.models import build_model
from fastrecon.physics.masks import EquispacedMaskFractionFunc
from fastrecon.registry import _REGISTRY
from fastrecon.train.data import SimulatedSliceDataset
from fastrecon.train.loop import TrainSettings, normalise_batch, train
from fastrecon.weights import read_checkpoint, sha256_file
from tests.helpers import tiny_vit_config

SIZE = (32, 32)


@pytest.fixture(scope="module")
def config() -> fastrecon.ModelConfig:
    cfg = tiny_vit_config("test-train-vit", cascades=2)
    register(cfg, overwrite=True)
    yield cfg
    _REGISTRY.pop(cfg.name, None)


def datasets(train_len: int = 8, val_len: int = 2) -> tuple[SimulatedSliceDataset, SimulatedSliceDataset]:
    mask = EquispacedMaskFractionFunc([0.125], [4])
    return (
        SimulatedSliceDataset(train_len, mask, size=SIZE, num_coils=4, seed=0),
        SimulatedSliceDataset(val_len, mask, size=SIZE, num_coils=4, seed=1000),
    )


def test_simulated_dataset_is_deterministic_and_masked() -> None:
    data, _ = datasets()
    a, b = data[3], data[3]
    torch.testing.assert_close(a.masked_kspace, b.masked_kspace)
    assert not torch.equal(data[2].masked_kspace, a.masked_kspace)
    assert bool((a.masked_kspace[..., ~a.mask] == 0).all()) and bool(
        (a.masked_kspace[..., a.mask] != 0).any()
    )
    assert a.target.shape == SIZE and a.max_value == pytest.approx(float(a.target.max()))
    with pytest.raises(IndexError):
        data[8]


def test_normalise_batch_scales_by_zero_filled_max() -> None:
    data, _ = datasets()
    batch = torch.utils.data.default_collate([data[0], data[1]])
    kspace, mask, target, data_range = normalise_batch(batch)
    from fastrecon.physics import ifft2c, rss

    peaks = rss(ifft2c(kspace), dim=1).flatten(1).amax(dim=1)
    torch.testing.assert_close(peaks, torch.ones(2))
    assert mask.shape == (2, 1, 1, SIZE[1]) and torch.equal(data_range, target.flatten(1).amax(dim=1))


def test_train_writes_loadable_checkpoint_and_resumes(config: fastrecon.ModelConfig, tmp_path: Path) -> None:
    train_data, val_data = datasets()
    out = tmp_path / "tiny.safetensors"
    settings = TrainSettings(epochs=2, batch_size=2, max_steps_per_epoch=3, seed=0)
    result = train(config, train_data, val_data, out, settings=settings, show_progress=False)
    assert out.is_file() and result.sha256 == sha256_file(out)
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert all(torch.isfinite(torch.tensor([h["train_loss"], h["val_loss"]])).all() for h in result.history)
    assert result.best_val_loss == min(h["val_loss"] for h in result.history)
    file_config, state = read_checkpoint(out)
    assert file_config == config
    with safe_open(str(out), framework="pt") as handle:
        meta = json.loads(handle.metadata()["training"])
    assert meta["best_epoch"] == result.best_epoch

    # Decoder weights moved, the frozen encoder did not.
    torch.manual_seed(settings.seed)
    initial = build_model(config).state_dict()
    encoder_keys = [k for k in state if k.startswith("encoder.")]
    decoder_keys = [k for k in state if ".denoiser." in k]
    assert encoder_keys and decoder_keys
    assert all(torch.equal(state[k], initial[k]) for k in encoder_keys)
    assert any(not torch.equal(state[k], initial[k]) for k in decoder_keys)

    # The checkpoint loads through the public API and reconstructs.
    sample = val_data[0]
    image = fastrecon.load(out).reconstruct(sample.masked_kspace, sample.mask)
    assert image.shape == SIZE and bool(torch.isfinite(image).all())

    # Resume continues at epoch 3 with the saved history.
    more = train(
        config,
        train_data,
        val_data,
        out,
        settings=TrainSettings(epochs=3, batch_size=2, max_steps_per_epoch=3),
        show_progress=False,
    )
    assert [h["epoch"] for h in more.history] == [1, 2, 3]
    assert more.history[:2] == result.history


def test_early_stopping(config: fastrecon.ModelConfig, tmp_path: Path) -> None:
    train_data, val_data = datasets(4, 1)
    # lr 0: the validation loss never improves after epoch 1, so patience 1 stops at epoch 2.
    settings = TrainSettings(epochs=5, lr=0.0, patience=1, batch_size=2, max_steps_per_epoch=1)
    result = train(
        config, train_data, val_data, tmp_path / "stop.safetensors", settings=settings, show_progress=False
    )
    assert result.stopped_early and len(result.history) == 2 and result.best_epoch == 1


def test_cli_train_on_simulated_data(
    config: fastrecon.ModelConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli.safetensors"
    code = main(
        [
            "train",
            "--model",
            config.name,
            "--data",
            "simulated",
            "--sim-train",
            "4",
            "--sim-val",
            "2",
            "--sim-size",
            "32",
            "--sim-coils",
            "4",
            "--epochs",
            "1",
            "--batch-size",
            "2",
            "--accel",
            "4",
            "--center-fraction",
            "0.125",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert f"sha256 {sha256_file(out)}" in printed


def test_batch_acs_is_the_mask_functions_count_not_the_rule() -> None:
    from fastrecon.physics import acs_masks
    from fastrecon.train.loop import batch_acs

    # A 368-wide knee at x4 (fastMRI's knee validation): the mask function samples 29 centre lines, the
    # contiguous-block rule finds a different block.
    drawn = EquispacedMaskFractionFunc([0.08], [4]).sample(368, seed=3)
    mask = drawn.mask.reshape(1, 1, 1, -1)
    acs = batch_acs(mask, torch.tensor([drawn.num_low_frequencies]))
    assert acs.shape == (1, 1, 1, 368) and int(acs.sum()) == drawn.num_low_frequencies == 29
    start = (368 - 29 + 1) // 2
    assert bool(acs[0, 0, 0, start : start + 29].all())
    assert not torch.equal(acs.reshape(-1), acs_masks(mask).reshape(-1))
    with pytest.raises(fastrecon.errors.InputError, match="one per sample"):
        batch_acs(mask, [29, 29])


def test_training_gives_the_model_the_samples_acs_count(
    config: fastrecon.ModelConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastrecon.metrics import SSIMLoss
    from fastrecon.models.unrolled import UnrolledNet
    from fastrecon.train.loop import _run_epoch

    seen: list[torch.Tensor | None] = []
    forward = UnrolledNet.forward

    def spy(self, kspace0, mask, acs=None, output="rss"):  # type: ignore[no-untyped-def]
        seen.append(acs)
        return forward(self, kspace0, mask, acs, output)

    monkeypatch.setattr(UnrolledNet, "forward", spy)
    data, _ = datasets()
    loader = torch.utils.data.DataLoader(data, batch_size=2)
    model = build_model(config, warn_random_encoder=False)
    settings = TrainSettings(max_steps_per_epoch=1)
    _run_epoch(model, loader, SSIMLoss(), torch.device("cpu"), None, settings, "val", False)
    batch = next(iter(loader))
    assert len(seen) == 1 and seen[0] is not None
    assert seen[0].sum(dim=-1).flatten().tolist() == batch.num_low_frequencies.tolist()
