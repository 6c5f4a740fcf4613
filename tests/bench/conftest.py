"""Benchmark tests.

- As in ``tests/kernels``, ``TRITON_INTERPRET`` is set before ``fastrecon.kernels.dc`` is first imported
  (this directory is collected before ``tests/kernels``), so the DC benchmark's interpreter mode is tested
  on machines without a GPU. An explicit ``TRITON_INTERPRET`` from the environment wins.
- Microbenchmarks (``@pytest.mark.microbench``, pytest-benchmark's ``benchmark`` fixture) are skipped
  unless pytest-benchmark is asked to measure: ``pytest tests/bench --benchmark-only`` (or
  ``--benchmark-enable``). The project's ``addopts`` no longer carries ``--benchmark-disable``, which
  made ``--benchmark-only`` an error.
"""

from __future__ import annotations

import os

import pytest
import torch

if "TRITON_INTERPRET" not in os.environ and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"


def _measuring(config: pytest.Config) -> bool:
    return bool(config.getoption("benchmark_only", False) or config.getoption("benchmark_enable", False))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _measuring(config):
        return
    skip = pytest.mark.skip(reason="microbenchmark: run with `pytest tests/bench --benchmark-only`")
    for item in items:
        if "microbench" in item.keywords:
            item.add_marker(skip)
