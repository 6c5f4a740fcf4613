"""Shared test set-up: offline hub, deterministic seeds, capability skips."""

from __future__ import annotations

import os

# Hub names must fail fast offline instead of hanging on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("FASTRECON_HOME", os.path.join(os.path.dirname(__file__), ".fastrecon-home-unused"))

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Full-size ViT-B tests take minutes each on 2 CPU cores: run them with FASTRECON_RUN_SLOW=1.
    run_slow = os.environ.get("FASTRECON_RUN_SLOW", "0") not in ("", "0")
    skip_slow = pytest.mark.skip(reason="full-size model (minutes on CPU); set FASTRECON_RUN_SLOW=1")
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    cuda = torch.cuda.is_available()
    for item in items:
        if "gpu" in item.keywords and not cuda:
            item.add_marker(skip_gpu)
        if "slow" in item.keywords and not run_slow:
            item.add_marker(skip_slow)
