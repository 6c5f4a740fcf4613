"""demo-x8's varied training data: reproducible, batchable groups, every knob in range, held-out sources kept out."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from fastrecon.errors import InputError
from fastrecon.train.data import TRAIN_CARDIAC_SEEDS, TRAIN_SOURCES, VariedSettings, VariedSliceDataset
from fastrecon.train.loop import normalise_batch


def test_items_are_reproducible_and_groups_share_geometry() -> None:
    data = VariedSliceDataset(8, seed=3, group=4)
    first, again = data[5], VariedSliceDataset(8, seed=3, group=4)[5]
    assert torch.equal(first.masked_kspace, again.masked_kspace) and torch.equal(first.target, again.target)
    assert not torch.equal(data[5].target, VariedSliceDataset(8, seed=4, group=4)[5].target)
    shapes = [tuple(data[i].masked_kspace.shape) for i in range(8)]
    assert len(set(shapes[:4])) == 1 and len(set(shapes[4:])) == 1
    batch = next(iter(DataLoader(data, batch_size=4, shuffle=False)))
    kspace, mask, target, _ = normalise_batch(batch)
    assert kspace.shape[0] == 4 and mask.shape == (4, 1, 1, kspace.shape[-1]) and target.shape[0] == 4


def test_draws_cover_the_recipe() -> None:
    settings = VariedSettings()
    data = VariedSliceDataset(48, seed=0, group=2, settings=settings)
    sources: Counter[str] = Counter()
    for i in range(len(data)):
        item = data[i]
        coils, height, width = item.masked_kspace.shape
        assert settings.coils[0] <= coils <= settings.coils[1]
        assert height in settings.sizes and width in settings.sizes
        lines = int(item.mask.sum())
        assert 4 <= width / lines <= 11  # x4-x10 (random masks vary around their target)
        assert 2 <= item.num_low_frequencies <= 24
        # Unsampled columns are zero, sampled ones carry data.
        assert bool((item.masked_kspace[..., ~item.mask] == 0).all())
        assert float(item.target.max()) > 0
        sources[item.fname.split("-")[-1] if not item.fname.endswith("mni-t1") else "mni-t1"] += 1
    assert set(sources) == set(TRAIN_SOURCES), sources


def test_held_out_cardiac_seed_is_outside_the_training_range() -> None:
    from fastrecon.demo import source_image

    assert TRAIN_CARDIAC_SEEDS[0] > 1234  # the demo's cardiac subject
    assert source_image("cardiac").shape == (128, 128)


def test_bad_settings() -> None:
    with pytest.raises(InputError, match="length and group must be >= 1"):
        VariedSliceDataset(0)
    with pytest.raises(InputError, match="source_weights"):
        VariedSliceDataset(4, settings=VariedSettings(source_weights=(1.0, -1.0, 0.0, 0.0)))


def test_cli_train_on_varied_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fastrecon import register
    from fastrecon.cli import main
    from fastrecon.registry import _REGISTRY
    from fastrecon.weights import sha256_file
    from tests.helpers import tiny_vit_config

    config = register(tiny_vit_config("test-train-varied", cascades=1), overwrite=True)
    try:
        out = tmp_path / "varied.safetensors"
        args = ["train", "--model", config.name, "--data", "varied", "--sim-train", "2", "--sim-val", "2"]
        args += ["--epochs", "1", "--batch-size", "2", "--out", str(out)]
        assert main(args) == 0
        assert f"sha256 {sha256_file(out)}" in capsys.readouterr().out
    finally:
        _REGISTRY.pop(config.name, None)
