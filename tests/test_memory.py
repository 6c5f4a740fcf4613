"""The default batch: activation estimate per slice against a memory budget (fastrecon._memory), max_memory."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

import fastrecon
from fastrecon import _memory
from fastrecon.errors import FastreconError, InputError, InputTypeError
from fastrecon.registry import get_config

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # Small runs: one thread is faster, and two spin-wait on each other on a busy 2-core machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (4096, 4096),
        (np.int64(7), 7),
        ("4GiB", 4 * 2**30),
        ("512 MB", 512 * 10**6),
        ("1.5gib", int(1.5 * 2**30)),
        ("2e9", 2 * 10**9),
        ("300kB", 300_000),
        ("1 B", 1),
    ],
)
def test_parse_memory(text: object, expected: int) -> None:
    assert _memory.parse_memory(text) == expected


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("4 parsecs", InputError),
        ("", InputError),
        ("-1GB", InputError),
        (0, InputError),
        (-5, InputError),
        ("0.1", InputError),
        ("inf", InputError),
        (1.5e9, InputTypeError),
        (True, InputTypeError),
        ([1], InputTypeError),
    ],
)
def test_bad_max_memory_is_refused_at_load(value: object, error: type[FastreconError]) -> None:
    with pytest.raises(error, match="max_memory"):
        fastrecon.load("demo-x8", device="cpu", max_memory=value)  # type: ignore[arg-type]


def test_the_issue_case_varnet_16_slices_of_4x256x256() -> None:
    """varnet-x8 on 16 slices of 4x256x256 used 1071 MiB with the old default (batch 16, from k-space
    bytes alone): the default now comes from the activation estimate and the device's total memory."""
    config = get_config("varnet-x8")
    per_slice = _memory.activation_bytes_per_slice(config, 4, 256, 256)
    # The estimate bounds the measured per-slice growth (61 MiB, python -m fastrecon.bench.memory).
    assert 61 * 2**20 <= per_slice <= 2 * 61 * 2**20
    budget = _memory.memory_budget(CPU)
    assert budget == min(_memory.device_memory(CPU) // _memory.CPU_SHARE, _memory.CPU_CAP)
    batch = _memory.default_batch(config, 4, 256, 256, CPU)
    assert batch == max(1, min(16, budget // per_slice))
    assert batch * per_slice <= max(budget, per_slice)  # the chosen batch fits the budget
    assert batch < 16  # 16 slices no longer go through at once on CPU
    # Stable: the same model, shape and device always give the same batch.
    assert {_memory.default_batch(config, 4, 256, 256, CPU) for _ in range(5)} == {batch}
    # max_memory lowers it; a tiny one gives 1; a huge one is capped at 16.
    assert _memory.default_batch(config, 4, 256, 256, CPU, max_memory=3 * per_slice) == 3
    assert _memory.default_batch(config, 4, 256, 256, CPU, max_memory=1) == 1
    assert _memory.default_batch(config, 4, 256, 256, CPU, max_memory=2**50) == 16


def test_cuda_budget_uses_total_memory_less_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_memory, "device_memory", lambda device: 80 * 2**30)
    cuda = torch.device("cuda")
    assert _memory.memory_budget(cuda, weight_bytes=2**30) == 39 * 2**30
    assert _memory.memory_budget(cuda, max_memory=5) == 5
    config = get_config("clip-x8")
    per_slice = _memory.activation_bytes_per_slice(config, 10, 512, 246)
    assert _memory.default_batch(config, 10, 512, 246, cuda) == min(16, 40 * 2**30 // per_slice)


def test_estimate_grows_with_the_shape_and_the_widths() -> None:
    config = get_config("varnet-x8")
    small = _memory.activation_bytes_per_slice(config, 4, 128, 128)
    assert _memory.activation_bytes_per_slice(config, 4, 256, 256) > 3 * small
    assert _memory.activation_bytes_per_slice(config, 16, 128, 128) > 3 * small
    wider = dataclasses.replace(config, varnet=dataclasses.replace(config.varnet, chans=64))
    assert _memory.activation_bytes_per_slice(wider, 4, 128, 128) > small
    vit = get_config("clip-x8")
    assert _memory.activation_bytes_per_slice(vit, 10, 512, 246) > _memory.activation_bytes_per_slice(
        vit, 10, 128, 128
    )


class _Recording:
    """Wraps a runner and records the batch of every chunk it is given."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.static_batch = runner.static_batch
        self.batches: list[int] = []

    def __call__(self, prepared: Any, output: Any) -> Any:
        self.batches.append(int(prepared.kspace.shape[0]))
        return self.runner(prepared, output)

    def info(self) -> dict[str, Any]:
        return dict(self.runner.info())


def test_max_memory_sets_the_chunks_and_a_tiny_one_still_works() -> None:
    recon = fastrecon.load("demo-x8", device="cpu", max_memory="1B")
    assert recon.max_memory == 1
    gen = np.random.default_rng(0)
    kspace = (gen.standard_normal((3, 4, 32, 32)) + 1j * gen.standard_normal((3, 4, 32, 32))).astype(
        np.complex64
    )
    mask = np.zeros(32, bool)
    mask[::4] = True
    mask[13:19] = True
    tiny = dataclasses.replace(recon, runner=_Recording(recon.runner))
    out = tiny.reconstruct(kspace * mask, mask)
    assert tiny.runner.batches == [1, 1, 1]
    assert out.shape == (3, 32, 32) and np.isfinite(out).all()
    per_slice = _memory.activation_bytes_per_slice(recon.config, 4, 32, 32)
    two = dataclasses.replace(recon, max_memory=2 * per_slice, runner=_Recording(recon.runner))
    np.testing.assert_allclose(two.reconstruct(kspace * mask, mask), out, rtol=1e-5, atol=1e-6)
    assert two.runner.batches == [2, 1]
    # with_backend keeps the limit
    assert recon.with_backend("eager").max_memory == 1


_PEAK_SCRIPT = """
import json, sys
import numpy as np
import torch
import fastrecon
from fastrecon import _memory
from fastrecon.bench.memory import peak_rss_bytes
from fastrecon.registry import get_config

torch.set_num_threads(1)
per_slice = _memory.activation_bytes_per_slice(get_config("varnet-x8"), 4, 256, 256)
recon = fastrecon.load("varnet-x8", weights=None, device="cpu", max_memory=per_slice)
recon.model.cascades = recon.model.cascades[:1]
gen = np.random.default_rng(1)
shape = (3, 4, 256, 256)
mask = np.zeros(256, bool)
mask[::8] = True
mask[120:136] = True
kspace = ((gen.standard_normal(shape) + 1j * gen.standard_normal(shape)) * mask).astype(np.complex64)
recon.reconstruct(kspace[:1], mask)  # warm-up (one-time allocations)
run = sys.argv[1]
batch = None if run == "default" else 3
peak = peak_rss_bytes(lambda: recon.reconstruct(kspace, mask, batch_size=batch))
print(json.dumps({"peak": peak, "per_slice": per_slice, "input": kspace.nbytes}))
"""


def _measured_peak(run: str) -> dict[str, int]:
    """Peak resident memory of one reconstruct in a fresh process: in a long-lived one (the test
    session) the allocator's leftovers from earlier tests make the figure depend on test order."""
    import json
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, run], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak RSS through /proc (Linux)")
def test_default_batch_bounds_the_measured_peak() -> None:
    """A VarNet with fastMRI's widths (one cascade: a cascade's activations are freed before the next,
    so the peak does not depend on their number) on 3 slices of 4x256x256 with room for 1 slice: the
    measured peak stays within the budget plus what does not scale with the chunk (copies of the whole
    input and output, allocator slack), and the same input in one batch of 3 exceeds it."""
    default, whole = _measured_peak("default"), _measured_peak("whole")
    per_slice = default["per_slice"]
    # Not chunked: the caller's array, its complex64 copy and the stacked output (<= 3 copies of the input).
    fixed = 3 * default["input"] + 16 * 2**20
    assert default["peak"] <= per_slice + fixed, (default["peak"] / 2**20, per_slice / 2**20, fixed / 2**20)
    assert whole["peak"] > per_slice + fixed, (whole["peak"] / 2**20, per_slice / 2**20)
