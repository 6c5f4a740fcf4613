"""torch.export of the frozen encoder's features: real dtypes, dynamic batch, pruned blocks, parity with eager.

A tiny timm ViT with 8 blocks of which the first 6 are used (``num_blocks=6``), so pruning has
something to remove. Runs on the CPU in a few seconds.
"""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from fastrecon.errors import InputError, InputTypeError
from fastrecon.export.encoder_export import check_batch_range, export_encoder
from fastrecon.models.encoders import FrozenEncoder, build_encoder
from fastrecon.registry import TINY_DEMO_ENCODER

DEEP_TINY = dataclasses.replace(TINY_DEMO_ENCODER, timm_kwargs={**TINY_DEMO_ENCODER.timm_kwargs, "depth": 8})
BATCH = (1, 2, 4)
BLOCK = re.compile(r"\bblocks\.(\d+)\.")


@pytest.fixture(scope="module")
def encoder() -> FrozenEncoder:
    torch.manual_seed(1)
    # Unpruned on purpose: export must prune (a copy) by itself.
    return build_encoder(DEEP_TINY, None, prune=False, warn_random=False)


@pytest.fixture(scope="module")
def program(encoder: FrozenEncoder) -> torch.export.ExportedProgram:
    return export_encoder(encoder, batch=BATCH)


def _dtypes(value: object) -> list[torch.dtype]:
    if isinstance(value, torch.Tensor):
        return [value.dtype]
    if isinstance(value, list | tuple):
        return [d for v in value for d in _dtypes(v)]
    return []


def test_graph_has_no_complex_dtypes(program: torch.export.ExportedProgram) -> None:
    seen = [d for node in program.graph.nodes for d in _dtypes(node.meta.get("val"))]
    seen += [t.dtype for t in program.state_dict.values()] + [t.dtype for t in program.constants.values()]
    assert torch.float32 in seen  # the walk really saw tensors
    assert not [d for d in seen if d.is_complex], sorted({str(d) for d in seen})


def test_batch_dimension_is_dynamic_over_the_range(program: torch.export.ExportedProgram) -> None:
    (pixels,) = [n for n in program.graph.nodes if n.op == "placeholder" and n.name == "pixels"]
    batch_dim = pixels.meta["val"].shape[0]
    assert isinstance(batch_dim, torch.SymInt)
    bounds = program.range_constraints[batch_dim.node.expr]
    assert (int(bounds.lower), int(bounds.upper)) == (BATCH[0], BATCH[2])


@pytest.mark.parametrize("batch", [1, 3, BATCH[2]])
def test_matches_eager_features(
    encoder: FrozenEncoder, program: torch.export.ExportedProgram, batch: int
) -> None:
    pixels = torch.randn(batch, 3, DEEP_TINY.img_size, DEEP_TINY.img_size)
    with torch.no_grad():
        got = program.module()(pixels)
        want = encoder.features(pixels)  # eager, unpruned: blocks 6..7 never run anyway
    assert len(got) == len(want) == DEEP_TINY.num_blocks
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape == (batch, DEEP_TINY.embed_dim, 8, 8)
        assert g.dtype == torch.float32
        # The program runs the same ATen kernels as eager; allow a few fp32 ulps of the output
        # scale for kernel choices that may differ with the graph (bit identity is not required).
        tol = 8 * torch.finfo(torch.float32).eps * float(w.abs().max())
        err = float((g - w).abs().max())
        assert err <= tol, f"max abs error {err:.3g} > {tol:.3g}"


def test_program_carries_no_blocks_after_num_blocks(
    encoder: FrozenEncoder, program: torch.export.ExportedProgram
) -> None:
    names = list(program.state_dict) + [p for p, _ in program.named_parameters()]
    blocks = {int(m.group(1)) for name in names if (m := BLOCK.search(name))}
    assert blocks == set(range(DEEP_TINY.num_blocks))
    assert not [n for n in names if re.search(r"backbone\.(norm|fc_norm|head)\.", n)]
    assert len(encoder.blocks) == 8  # the caller's module was not pruned in place


def test_static_range_and_other_real_dtype(encoder: FrozenEncoder) -> None:
    program = export_encoder(encoder, batch=(2, 2, 2), dtype=torch.float64)
    (pixels,) = [n for n in program.graph.nodes if n.op == "placeholder" and n.name == "pixels"]
    assert tuple(pixels.meta["val"].shape) == (2, 3, 128, 128)
    assert pixels.meta["val"].dtype == torch.float64
    out = program.module()(torch.randn(2, 3, 128, 128, dtype=torch.float64))
    assert all(t.dtype == torch.float64 for t in out)
    assert next(encoder.parameters()).dtype == torch.float32  # cast happened on a copy


@pytest.mark.parametrize(
    ("batch", "match"),
    [
        ((4, 2, 8), "min <= opt <= max"),
        ((1, 8, 4), "min <= opt <= max"),
        ((8, 8, 4), "min <= opt <= max"),
        ((1, 1, 4), ">= 2"),
        ((1, 1, 1), ">= 2"),
        ((0, 2, 4), "at least 1"),
        ((1, 2), "three ints"),
        ((1, 2.5, 4), "three ints"),
        ("124", "three ints"),
    ],
)
def test_refuses_bad_batch_range(encoder: FrozenEncoder, batch: object, match: str) -> None:
    with pytest.raises(InputError, match=re.escape(match)) as info:
        export_encoder(encoder, batch=batch)  # type: ignore[arg-type]
    assert repr(batch) in str(info.value)
    with pytest.raises(InputError, match=re.escape(match)):
        check_batch_range(batch)  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", [torch.complex64, torch.int32])
def test_refuses_non_real_dtype(encoder: FrozenEncoder, dtype: torch.dtype) -> None:
    with pytest.raises(InputTypeError, match="real floating-point"):
        export_encoder(encoder, batch=BATCH, dtype=dtype)
