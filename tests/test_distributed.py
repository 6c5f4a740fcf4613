"""Ranks of torchrun: each uses its own GPU; a bad environment is a clear error."""

from __future__ import annotations

import pytest
import torch

from fastrecon._distributed import distributed, rank_device
from fastrecon.errors import InputError


def test_each_rank_uses_its_local_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import fastrecon._features as features

    monkeypatch.setattr(features, "has_cuda", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert rank_device(None, 1) == "cuda:1" and rank_device("cuda", 5) == "cuda:1"
    assert rank_device("cpu", 1) == "cpu" and rank_device("cuda:2", 0) == "cuda:2"
    monkeypatch.setattr(features, "has_cuda", lambda: False)
    assert rank_device(None, 1) is None
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(InputError, match="WORLD_SIZE='two'"), distributed(None):
        pass


def test_world_size_without_torchrun_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """WORLD_SIZE left in the environment without the rest of torchrun's variables (was torch's ValueError)."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with (
        pytest.raises(
            InputError, match="RANK, MASTER_ADDR, MASTER_PORT are not set; start the ranks with torchrun"
        ),
        distributed("cpu"),
    ):
        pass
