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
