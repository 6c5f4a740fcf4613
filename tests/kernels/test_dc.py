"""Fused data-consistency kernels vs their references (``fastrecon.kernels.dc`` / ``.ops``).

Small shapes run everywhere: in Triton's CPU interpreter without a GPU (see conftest.py), compiled
on CUDA with one. Each kernel output is compared with a complex128 oracle (the ``*_ref`` twin in
float64) and judged against the fp32 eager reference's own error (``_compare.py``). Every test that
expects the kernels to run checks the launch counter, so a silent fallback to the reference fails.
Real sizes (cine, knee, brain) and the model check at scale are ``@pytest.mark.gpu``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest
import torch
from torch import nn

from fastrecon.errors import InputError, InputTypeError
from fastrecon.kernels import dc, ops
from fastrecon.models.unrolled import Cascade, UnrolledNet
from fastrecon.physics import ifft2c, rss
from fastrecon.physics.plan import KSPACE_2D
from tests.kernels._compare import assert_matches

RUNS_KERNELS = dc._INTERPRETED or (dc.triton is not None and torch.cuda.is_available())
DEVICE = torch.device("cuda" if torch.cuda.is_available() and not dc._INTERPRETED else "cpu")
# Only the tests that launch kernels need Triton (compiled on CUDA, or its CPU interpreter); the
# reference path, validation, the custom-op plumbing and routing run everywhere.
needs_kernels = pytest.mark.skipif(
    not RUNS_KERNELS,
    reason="Triton kernels cannot run here (Triton missing, or no CUDA GPU and no TRITON_INTERPRET=1)",
)

# (N, C, H, W, mask kind, non-contiguous inputs): odd and even sizes, 1/4/15 coils, batch 1 and 3,
# 1-D / 2-D / 4-D masks. Chosen to cover every axis without the full product (interpreter time).
CASES = [
    (1, 1, 8, 8, "1d", False),
    (1, 4, 9, 7, "2d", False),
    (3, 4, 10, 7, "1d", True),
    (1, 15, 7, 12, "2d", True),
    (3, 15, 6, 9, "4d", False),
    (2, 1, 1, 5, "1d", True),
]
CASE_IDS = [f"{n}x{c}x{h}x{w}-{m}{'-strided' if nc else ''}" for n, c, h, w, m, nc in CASES]


def _randc(*shape: int, device: torch.device = DEVICE, strided: bool = False) -> torch.Tensor:
    """Random complex64; ``strided`` returns a non-contiguous view (transposed H/W and a step)."""
    if not strided:
        return torch.randn(*shape, dtype=torch.complex64, device=device)
    *lead, h, w = shape
    big = torch.randn(*lead, w, 2 * h, dtype=torch.complex64, device=device)
    view = big[..., ::2].transpose(-1, -2)  # strides (.., 1, 2h): not contiguous in W
    assert not view.is_contiguous()
    return view


def _mask(kind: str, n: int, c: int, h: int, w: int, device: torch.device = DEVICE) -> torch.Tensor:
    if kind == "1d":
        mask = torch.rand(w, device=device) < 0.4
        mask[w // 2] = True  # a centre line, as real masks have
        return mask
    if kind == "2d":
        return (torch.rand(h, w, device=device) < 0.4).to(torch.float32)  # float mask: nonzero = sampled
    return torch.rand(n, 1, 1, w, device=device) < 0.4


def _inputs(case: tuple[Any, ...]) -> dict[str, torch.Tensor]:
    n, c, h, w, kind, strided = case
    return {
        "kspace": _randc(n, c, h, w, strided=strided),
        "kspace0": _randc(n, c, h, w),
        "mask": _mask(kind, n, c, h, w),
        "dc_weight": torch.rand(1, device=DEVICE) + 0.5,
        "sens": _randc(n, c, h, w, strided=strided),
        "image": _randc(n, h, w, strided=strided),
    }


def _c128(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.complex128) if x.is_complex() else x


def _launched(*names: str) -> dict[str, int]:
    return {name: dc.LAUNCHES[name] for name in names}


def _assert_ran(before: dict[str, int], *names: str) -> None:
    after = _launched(*names)
    silent = [name for name in names if after[name] <= before[name]]
    assert not silent, f"kernels {silent} did not launch: the op fell back to the reference"


# ----------------------------------------------------------------------------------------------------
# Each op vs the float64 oracle
# ----------------------------------------------------------------------------------------------------


@needs_kernels
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_sens_expand(case: tuple[Any, ...]) -> None:
    x = _inputs(case)
    before = _launched("expand")
    out = ops.sens_expand(x["image"], x["sens"])
    _assert_ran(before, "expand")
    oracle = ops.sens_expand_ref(_c128(x["image"]), _c128(x["sens"]))
    assert out.dtype == torch.complex64
    assert_matches(out, oracle, ops.sens_expand_ref(x["image"], x["sens"]), name="sens_expand")


@needs_kernels
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_sens_reduce(case: tuple[Any, ...]) -> None:
    x = _inputs(case)
    before = _launched("reduce")
    out = ops.sens_reduce(x["kspace"], x["sens"])
    _assert_ran(before, "reduce")
    oracle = ops.sens_reduce_ref(_c128(x["kspace"]), _c128(x["sens"]))
    assert_matches(out, oracle, ops.sens_reduce_ref(x["kspace"], x["sens"]), name="sens_reduce")


@needs_kernels
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_soft_dc(case: tuple[Any, ...]) -> None:
    x = _inputs(case)
    args = (x["kspace"], x["kspace0"], x["mask"], x["dc_weight"])
    before = _launched("dc")
    out = ops.soft_dc(*args)
    _assert_ran(before, "dc")
    oracle = ops.soft_dc_ref(_c128(args[0]), _c128(args[1]), args[2], args[3].double())
    assert_matches(out, oracle, ops.soft_dc_ref(*args), name="soft_dc")


@needs_kernels
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_cascade_step(case: tuple[Any, ...]) -> None:
    x = _inputs(case)
    args = (x["kspace"], x["kspace0"], x["mask"], x["dc_weight"], x["sens"], x["image"])
    before = _launched("expand", "dc", "reduce")
    k_next, image_next = ops.cascade_step(*args)
    _assert_ran(before, "expand", "dc", "reduce")
    oracle = ops.cascade_step_ref(*(_c128(a) if a is not args[3] else a.double() for a in args))
    eager = ops.cascade_step_ref(*args)
    assert_matches(k_next, oracle[0], eager[0], name="cascade_step k'")
    assert_matches(image_next, oracle[1], eager[1], name="cascade_step image'")


@needs_kernels
@pytest.mark.parametrize("kind", ["1d", "4d"])
def test_batches_over_the_grid_cap_are_split_into_slice_blocks(
    monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """CUDA caps grid axis 1 at 65,535 slices; with the cap lowered to 2, 5 slices take 3 launches each."""
    monkeypatch.setattr(dc, "MAX_GRID_SLICES", 2)
    x = _inputs((5, 3, 6, 7, kind, False))
    args = (x["kspace"], x["kspace0"], x["mask"], x["dc_weight"], x["sens"], x["image"])
    before = _launched("expand", "dc", "reduce")
    k_next, image_next = dc.cascade_step_triton(*args)
    after = _launched("expand", "dc", "reduce")
    assert all(after[name] - before[name] == 3 for name in after), (before, after)
    oracle = ops.cascade_step_ref(*(_c128(a) if a.is_complex() else a for a in args))
    eager = ops.cascade_step_ref(*args)
    assert_matches(k_next, oracle[0], eager[0], name="k' (split)")
    assert_matches(image_next, oracle[1], eager[1], name="image' (split)")


@needs_kernels
def test_cascade_step_matches_the_eager_dc_form() -> None:
    """The DC-form contract: TRITON_2D and the eager KSPACE_2D agree on a 4-D mask from broadcast_mask."""
    x = _inputs((2, 4, 9, 10, "4d", False))
    mask = x["mask"]
    args = (x["kspace"], x["kspace0"], mask, x["dc_weight"], x["sens"], x["image"])
    got = ops.TRITON_2D.step(*args)
    want = KSPACE_2D.step(*args)
    oracle = KSPACE_2D.step(*(_c128(a) if a.is_complex() else a for a in args))
    for name, g, w, o in zip(("k'", "image'"), got, want, oracle, strict=True):
        assert_matches(g, o, w, name=name)
    reduced = ops.TRITON_2D.reduce(x["kspace"], x["sens"])
    oracle_reduced = ops.sens_reduce_ref(_c128(x["kspace"]), _c128(x["sens"]))
    assert_matches(reduced, oracle_reduced, KSPACE_2D.reduce(x["kspace"], x["sens"]), name="sens_reduce")


# ----------------------------------------------------------------------------------------------------
# Physics: adjointness, analytic cases, conjugate views
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 4, 9, 7), (1, 3, 8, 6)])
def test_expand_and_reduce_are_adjoint(shape: tuple[int, int, int, int]) -> None:
    """<E x, y> = <x, R y> (mrpro-style), with both sides through the kernels."""
    n, c, h, w = shape
    sens, image, kspace = _randc(n, c, h, w), _randc(n, h, w), _randc(n, c, h, w)
    lhs = torch.vdot(ops.sens_expand(image, sens).flatten(), kspace.flatten())
    rhs = torch.vdot(image.flatten(), ops.sens_reduce(kspace, sens).flatten())
    assert abs(complex(lhs) - complex(rhs)) <= 1e-5 * abs(complex(lhs)) + 1e-5


def test_soft_dc_analytic_cases() -> None:
    """Mask all zero: identity. Fully sampled with w = 1: the measured data. w = 0: identity."""
    k, k0 = _randc(2, 3, 5, 6), _randc(2, 3, 5, 6)
    none = torch.zeros(6, dtype=torch.bool, device=DEVICE)
    full = torch.ones(6, dtype=torch.bool, device=DEVICE)
    assert torch.equal(ops.soft_dc(k, k0, none, 0.7), k)
    assert torch.equal(ops.soft_dc(k, k0, full, 0.0), k)
    torch.testing.assert_close(ops.soft_dc(k, k0, full, 1.0), k0, rtol=0, atol=4e-7)


def test_cascade_with_zero_correction_is_soft_dc_then_reduce() -> None:
    k, k0, sens = _randc(1, 4, 7, 9), _randc(1, 4, 7, 9), _randc(1, 4, 7, 9)
    mask = torch.rand(9, device=DEVICE) < 0.5
    zero = torch.zeros(1, 7, 9, dtype=torch.complex64, device=DEVICE)
    k_next, image = ops.cascade_step(k, k0, mask, 0.5, sens, zero)
    assert torch.equal(k_next, ops.soft_dc(k, k0, mask, 0.5))
    torch.testing.assert_close(image, ops.sens_reduce(k_next, sens), rtol=0, atol=0)


def test_conjugated_and_negated_views() -> None:
    """Lazily conjugated/negated tensors (conj bit) are resolved, not reinterpreted as raw memory."""
    sens, image = _randc(1, 2, 6, 5), _randc(1, 6, 5)
    out = ops.sens_expand(image.conj(), -sens.conj())
    want = ops.sens_expand_ref(image.conj().resolve_conj(), (-sens.conj()).resolve_conj().resolve_neg())
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------------------
# Input validation: clear errors, never assert
# ----------------------------------------------------------------------------------------------------


def test_validation_errors() -> None:
    k, sens, image = _randc(1, 2, 4, 6), _randc(1, 2, 4, 6), _randc(1, 4, 6)
    mask = torch.ones(6, dtype=torch.bool, device=DEVICE)
    with pytest.raises(InputTypeError, match="complex64"):
        ops.sens_expand(image.to(torch.complex128), sens)
    with pytest.raises(InputTypeError, match="complex64"):
        ops.sens_reduce(torch.view_as_real(k), sens)
    with pytest.raises(InputError, match="does not match sens"):
        ops.sens_expand(_randc(1, 4, 5), sens)
    with pytest.raises(InputError, match="same"):
        ops.sens_reduce(_randc(1, 3, 4, 6), sens)
    with pytest.raises(InputError, match="does not fit k-space"):
        ops.soft_dc(k, k, torch.ones(5, dtype=torch.bool, device=DEVICE), 1.0)
    with pytest.raises(InputTypeError, match="float32"):
        ops.soft_dc(k, k, mask, torch.ones(2, device=DEVICE))
    with pytest.raises(InputTypeError, match="float32"):
        ops.cascade_step(k, k, mask, torch.ones(1, dtype=torch.float64, device=DEVICE), sens, image)
    with pytest.raises(InputError, match="correction"):
        ops.cascade_step(k, k, mask, 1.0, sens, _randc(1, 4, 5))
    with pytest.raises(InputError, match="one device"):
        dc.validate_sens_expand(image, sens.to("meta"))
    with pytest.raises(InputTypeError, match="torch.Tensor"):
        dc.validate_sens_reduce(k.cpu().numpy(), sens)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------------
# Custom-op plumbing: opcheck, autograd, compile/export as single nodes, dispatch
# ----------------------------------------------------------------------------------------------------


def _op_cases(requires_grad: bool) -> list[tuple[Any, tuple[torch.Tensor, ...]]]:
    n, c, h, w = 2, 3, 5, 6
    sens, image, k, k0 = _randc(n, c, h, w), _randc(n, h, w), _randc(n, c, h, w), _randc(n, c, h, w)
    weight = torch.tensor([0.6], device=DEVICE)
    mask = (torch.rand(w, device=DEVICE) < 0.5).reshape(1, 1, 1, w)
    if requires_grad:
        for t in (sens, image, k, k0, weight):
            t.requires_grad_(True)
    return [
        (ops._sens_expand_op, (image, sens)),
        (ops._sens_reduce_op, (k, sens)),
        (ops._soft_dc_op, (k, k0, mask, weight)),
        (ops._cascade_step_op, (k, k0, mask, weight, sens, image)),
    ]


# opcheck's aot_dispatch test converts the non-leaf copies it makes of our inputs to fake tensors, and
# torch's converter reads their .grad (a torch-internal UserWarning, not ours: our inputs are leaves).
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning")
@pytest.mark.parametrize("requires_grad", [False, True], ids=["no-grad", "grad"])
def test_opcheck(requires_grad: bool) -> None:
    for op, args in _op_cases(requires_grad):
        torch.library.opcheck(op, args)


def test_gradients_match_the_reference() -> None:
    """Autograd through the ops equals autograd through the references (float64 oracle as judge)."""
    n, c, h, w = 2, 3, 7, 6
    base = {
        "kspace": _randc(n, c, h, w),
        "kspace0": _randc(n, c, h, w),
        "dc_weight": torch.tensor([0.6], device=DEVICE),
        "sens": _randc(n, c, h, w),
        "correction": _randc(n, h, w),
    }
    mask = torch.rand(w, device=DEVICE) < 0.5
    g_k, g_x = _randc(n, c, h, w), _randc(n, h, w)

    def grads(fn: Any, dtype: torch.dtype) -> list[torch.Tensor]:
        leaves = {
            key: (
                t.to(dtype)
                if t.is_complex()
                else t.to(torch.float64 if dtype == torch.complex128 else t.dtype)
            )
            .detach()
            .requires_grad_(True)
            for key, t in base.items()
        }
        k_next, image = fn(
            leaves["kspace"],
            leaves["kspace0"],
            mask,
            leaves["dc_weight"],
            leaves["sens"],
            leaves["correction"],
        )
        torch.autograd.backward([k_next, image], [g_k.to(dtype), g_x.to(dtype)])
        return [leaves[key].grad for key in base]  # type: ignore[misc]

    got = grads(ops.cascade_step, torch.complex64)
    eager = grads(ops.cascade_step_ref, torch.complex64)
    oracle = grads(ops.cascade_step_ref, torch.complex128)
    for name, g, e, o in zip(base, got, eager, oracle, strict=True):
        assert_matches(g, o, e, name=f"grad {name}")


def _graph_targets(gm: torch.fx.GraphModule) -> list[str]:
    """Call targets of a graph, overloads named by their packet (dynamo keeps the packet, export the overload)."""
    return [
        str(node.target).removesuffix(".default") for node in gm.graph.nodes if node.op == "call_function"
    ]


def test_compile_sees_one_node() -> None:
    x = _inputs((1, 2, 6, 5, "1d", False))
    graphs: list[torch.fx.GraphModule] = []

    def backend(gm: torch.fx.GraphModule, example_inputs: Any) -> Any:
        graphs.append(gm)
        return gm.forward

    def step(
        k: torch.Tensor,
        k0: torch.Tensor,
        mask: torch.Tensor,
        w: torch.Tensor,
        s: torch.Tensor,
        c: torch.Tensor,
    ) -> Any:
        return ops.cascade_step(k, k0, mask, w, s, c)

    args = (x["kspace"], x["kspace0"], x["mask"], x["dc_weight"], x["sens"], x["image"])
    torch._dynamo.reset()
    out = torch.compile(step, backend=backend, fullgraph=True)(*args)
    assert len(graphs) == 1
    targets = _graph_targets(graphs[0])
    assert targets.count("fastrecon.cascade_step") == 1, targets
    assert not [t for t in targets if "fft" in t], targets
    torch.testing.assert_close(out[0], ops.cascade_step_ref(*args)[0], rtol=1e-5, atol=1e-5)


def test_export_sees_one_node() -> None:
    class Step(nn.Module):
        def forward(
            self,
            k: torch.Tensor,
            k0: torch.Tensor,
            mask: torch.Tensor,
            w: torch.Tensor,
            s: torch.Tensor,
            c: torch.Tensor,
        ) -> Any:
            k_next, image = ops.cascade_step(k, k0, mask, w, s, c)
            return ops.soft_dc(k_next, k0, mask, w), ops.sens_expand(image, s), image

    x = _inputs((1, 2, 6, 5, "1d", False))
    args = (x["kspace"], x["kspace0"], x["mask"], x["dc_weight"], x["sens"], x["image"])
    exported = torch.export.export(Step(), args)
    targets = _graph_targets(exported.graph_module)
    for name in ("cascade_step", "soft_dc", "sens_expand"):
        assert targets.count(f"fastrecon.{name}") == 1, targets


def test_implementation_routing() -> None:
    assert ops.implementation("cuda") == "triton"
    assert ops.implementation("meta") == "reference"
    assert ops.implementation("cpu") == ("triton-interpreter" if dc._INTERPRETED else "reference")


def test_cpu_without_interpreter_uses_the_reference_and_import_is_lazy() -> None:
    """A fresh process without TRITON_INTERPRET: importing the package does not import Triton, and
    the ops on CPU run the reference (documented dispatch), launching no kernel."""
    code = textwrap.dedent(
        """
        import sys
        import torch
        import fastrecon.kernels as K
        assert "triton" not in sys.modules, "importing fastrecon.kernels imported triton"
        assert "fastrecon.kernels.ops" not in sys.modules
        from fastrecon.kernels import dc
        k = torch.randn(1, 2, 5, 4, dtype=torch.complex64)
        s = torch.randn(1, 2, 5, 4, dtype=torch.complex64)
        assert K.implementation("cpu") == "reference"
        torch.testing.assert_close(K.sens_reduce(k, s), K.sens_reduce_ref(k, s), rtol=0, atol=0)
        assert sum(dc.LAUNCHES.values()) == 0, dc.LAUNCHES
        try:
            dc.sens_reduce_triton(k, s)
        except Exception as exc:
            if dc.triton is None:  # Triton not installed: the error names the extra to install
                assert type(exc).__name__ == "MissingDependencyError", exc
                assert "fastrecon[triton]" in str(exc)
            else:
                assert type(exc).__name__ == "BackendUnavailableError", exc
                assert "TRITON_INTERPRET" in str(exc)
        else:
            raise AssertionError("the Triton path ran on CPU without the interpreter")
        print("ok")
        """
    )
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


# ----------------------------------------------------------------------------------------------------
# End to end: a small unrolled model with the kernels vs the eager model
# ----------------------------------------------------------------------------------------------------


class _RssSens(nn.Module):
    """Sensitivities from the zero-filled coil images, normalised by their RSS (eps-guarded)."""

    def forward(
        self, kspace0: torch.Tensor, mask: torch.Tensor, acs: torch.Tensor | None = None
    ) -> torch.Tensor:
        coils = ifft2c(kspace0)
        return coils / (rss(coils, dim=1).unsqueeze(1) + 1e-6)


class _ConvCascade(Cascade):
    def __init__(self) -> None:
        super().__init__()
        self.dc_weight = nn.Parameter(torch.full((1,), 0.8))
        self.conv = nn.Conv2d(2, 2, 3, padding=1)

    def correction(self, image: torch.Tensor, encode: object) -> torch.Tensor:
        real = torch.view_as_real(image).permute(0, 3, 1, 2)
        out = self.conv(real).permute(0, 2, 3, 1).contiguous()
        return torch.view_as_complex(out)


class _ToyNet(UnrolledNet):
    def __init__(self, cascades: int) -> None:
        super().__init__()
        self.sens_net = _RssSens()
        self.cascades = nn.ModuleList([_ConvCascade() for _ in range(cascades)])


def _model_parity(n: int, c: int, h: int, w: int, cascades: int, device: torch.device) -> None:
    """The model with the fused DC vs a float64 run of the eager model, judged by the eager fp32
    model's own error (the op tests' helper): a PSNR threshold would admit 1e-3 relative error
    where fp32 against fp32 differs by about 1e-6."""
    model = _ToyNet(cascades).to(device)
    kspace = torch.randn(n, c, h, w, dtype=torch.complex64, device=device)
    mask = torch.rand(w, device=device) < 0.3
    mask[w // 2 - 2 : w // 2 + 2] = True
    kspace0 = kspace * mask
    before = _launched("expand", "dc", "reduce")
    with torch.no_grad():
        model.dc = ops.TRITON_2D
        fused = model(kspace0, mask)
        model.dc = KSPACE_2D
        eager = model(kspace0, mask)
        oracle = model.double()(kspace0.to(torch.complex128), mask)
    _assert_ran(before, "expand", "dc", "reduce")
    assert oracle.dtype == torch.float64
    assert_matches(fused, oracle, eager, name=f"model output {n}x{c}x{h}x{w}, {cascades} cascades")


@needs_kernels
def test_model_with_kernels_matches_eager_model() -> None:
    _model_parity(2, 4, 12, 11, cascades=3, device=DEVICE)


@needs_kernels
def test_model_gradients_with_kernels_match_eager() -> None:
    model = _ToyNet(2).to(DEVICE)
    kspace = _randc(1, 3, 8, 7)
    mask = torch.tensor([1, 0, 1, 1, 1, 0, 0], dtype=torch.bool, device=DEVICE)
    grads = []
    for form in (ops.TRITON_2D, KSPACE_2D):
        model.zero_grad()
        model.dc = form
        model(kspace * mask, mask).pow(2).sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])  # type: ignore[union-attr]
    for fused, eager in zip(*grads, strict=True):
        torch.testing.assert_close(fused, eager, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------------------------------
# GPU: real sizes
# ----------------------------------------------------------------------------------------------------

REAL_SIZES = {"cine": (1, 10, 246, 512), "knee": (1, 15, 640, 368), "brain": (1, 16, 320, 320)}


@pytest.mark.gpu
@needs_kernels
@pytest.mark.parametrize("size", list(REAL_SIZES), ids=list(REAL_SIZES))
def test_real_sizes_on_gpu(size: str) -> None:
    """Every op at a real matrix size vs the complex128 oracle; tolerance from eager fp32's error.

    No TF32 enters: the FFTs are cuFFT in fp32 and the kernels use no tl.dot; the eager-derived
    tolerance would expose a TF32 path (its error is ~1000x fp32's) if one appeared.
    """
    n, c, h, w = REAL_SIZES[size]
    device = torch.device("cuda")
    k, k0, sens = (torch.randn(n, c, h, w, dtype=torch.complex64, device=device) for _ in range(3))
    image = torch.randn(n, h, w, dtype=torch.complex64, device=device)
    mask = torch.rand(w, device=device) < 0.25
    weight = torch.tensor([0.7], device=device)
    args = (k, k0, mask, weight, sens, image)
    args64 = tuple(_c128(a) if a.is_complex() else a for a in args)
    assert_matches(ops.sens_expand(image, sens), ops.sens_expand_ref(*args64[-1:], args64[4]),
                   ops.sens_expand_ref(image, sens), name=f"{size} sens_expand")  # fmt: skip
    assert_matches(ops.sens_reduce(k, sens), ops.sens_reduce_ref(args64[0], args64[4]),
                   ops.sens_reduce_ref(k, sens), name=f"{size} sens_reduce")  # fmt: skip
    assert_matches(ops.soft_dc(k, k0, mask, weight), ops.soft_dc_ref(*args64[:3], weight.double()),
                   ops.soft_dc_ref(k, k0, mask, weight), name=f"{size} soft_dc")  # fmt: skip
    got = ops.cascade_step(*args)
    oracle = ops.cascade_step_ref(*args64[:3], weight.double(), *args64[4:])
    eager = ops.cascade_step_ref(*args)
    assert_matches(got[0], oracle[0], eager[0], name=f"{size} cascade k'")
    assert_matches(got[1], oracle[1], eager[1], name=f"{size} cascade image'")


@pytest.mark.gpu
@needs_kernels
def test_model_with_kernels_matches_eager_model_on_gpu() -> None:
    _model_parity(1, 15, 640, 368, cascades=4, device=torch.device("cuda"))
