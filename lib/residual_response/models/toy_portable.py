"""Matrix products and a weights hash that do not depend on the CPU: what makes the toy's training portable.

Same weights on every x86 CPU: kernels that round differently give different weights, and over
2000 optimiser steps the difference grows until the phase change moves by a checkpoint or more.
PyTorch, MKL and oneDNN pick kernels by the CPU's vector units (AVX2, AVX-512); MKL also by its
vendor. Fixing the vector width was not enough: with PyTorch's default kernels and
``MKL_CBWR=COMPATIBLE`` an Intel Xeon and an AMD EPYC trained different weights (sha256
``995c286b...`` and ``e607e1dc...``). On the AMD EPYC, MKL ignores ``MKL_ENABLE_INSTRUCTIONS``,
and its vector math library (VML), which computes PyTorch's float ``tanh`` (in GPT-2's
``gelu_new``) and ``sqrt`` (in AdamW), ignores ``MKL_CBWR`` too: its results there are the same
under every setting, and its tanh is not correctly rounded (0.1 % of float32 results are off by
one unit), so another code path gives other bits. Training therefore runs in a child process
(:data:`.toy.PORTABLE_ENV`: PyTorch's default, non-vectorised kernels, one thread) that calls
neither oneDNN nor MKL's float32 kernels or vector math (:class:`FixedPointMatmuls`): every
matrix product and its gradients is an exact integer product of 26-bit fixed-point operands,
whose result does not depend on the order of the additions. MKL computes it as float64 products
of 13-bit limbs, whose every partial sum float64 holds exactly (:func:`_exact_integer_matmul`),
so no kernel's rounding enters; numpy makes the fixed-point operands and the limbs and rounds the
integer result to float32 (every step exact or rounded once, so its vector units change no bit). ``tanh`` is ``2 sigmoid(2x) - 1`` with PyTorch's own sigmoid;
AdamW is PyTorch's fused kernel; attention is GPT-2's eager implementation. What remains is
PyTorch's own code and the C library's ``exp``/``log``, the same on every x86-64 CPU with FMA.
The log records the weights' SHA-256 (:func:`weights_sha256`), and ``make test`` compares a
fresh training's with :data:`.toy.EXPECTED_WEIGHTS_SHA256`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

__all__ = ["EXPECTED_VERSIONS", "EXPECTED_WEIGHTS_SHA256", "TRAINING_VERSION", "FixedPointMatmuls", "hash_problem",
           "weights_sha256"]

#: Version of the training procedure, recorded in the log; a cache trained by another version is
#: retrained. 2: no MKL rounding (exact fixed-point matrix products, tanh from sigmoid, fused AdamW, eager
#: attention); 1: MKL products and vector math, which differed between CPU vendors.
TRAINING_VERSION = 2

#: SHA-256 (:func:`weights_sha256`) of the final weights of the default recipe, seed 0, trained
#: with :data:`EXPECTED_VERSIONS` on x86-64; ``make test`` compares a fresh training with it.
EXPECTED_WEIGHTS_SHA256 = "e5501e0f203ac7216e1d30e24945150548f7d7d9737bf83b3f10b9c75944f952"
EXPECTED_VERSIONS = {"torch": "2.13.0+cpu", "transformers": "5.24.0", "machine": "x86_64", "libc": "glibc 2.36"}


# --------------------------------------------------------------------------------------------
# Matrix products that do not depend on the CPU
# --------------------------------------------------------------------------------------------

#: Magnitude bits of a fixed-point operand: |q| < 2**26, so a product of two sums up to 1024 terms
#: below 2**62 and int64 holds every partial sum exactly (longer sums drop low bits first).
_FIXED_POINT_BITS = 26
_INT64_SPARE_BITS = 62 - 2 * _FIXED_POINT_BITS


def _to_fixed_point(x: torch.Tensor) -> tuple[np.ndarray, int]:
    """``x`` as ``q * 2**-shift``: ``q`` integers with ``|q| < 2**26`` (float64, which holds them
    exactly), one power-of-two scale per tensor.

    Why per tensor and truncated: one scale lets the forward's operands serve the backward's
    products as they are, and the scaling (by a power of two) and the truncation are exact, so
    ``q`` is the same on every CPU. Entries below ``2**-26`` of the tensor's largest lose their
    low bits (float32 keeps 24 bits of each entry), far below the rounding of a float32 product.

    Why numpy: every step here and in :func:`_fixed_point_product` is exact (a power-of-two
    scale, a truncation, a conversion between integers and floats that hold them) or correctly
    rounded once (an integer to float32), so its result does not depend on the vector width;
    numpy runs them with the CPU's vector units, where this process's PyTorch runs its default,
    scalar kernels (:data:`.toy.PORTABLE_ENV`, which its reductions need).
    """
    a = x.detach().numpy()
    if a.size == 0:
        return np.zeros(a.shape, dtype=np.float64), 0
    amax = max(float(a.max()), -float(a.min()))
    if not amax < math.inf:  # inf or nan: it would turn into arbitrary integers, not propagate
        raise FloatingPointError(f"toy training: a non-finite value ({amax}) entered a matrix product")
    shift = min(max(_FIXED_POINT_BITS - math.frexp(amax)[1], -126), 127)  # amax < 2**(26 - shift)
    q = a.astype(np.float64)
    q *= 2.0**shift
    return np.trunc(q, out=q), shift


#: Bits of the low limb of :func:`_exact_integer_matmul`'s split operand.
_LIMB_BITS = _FIXED_POINT_BITS // 2


def _exact_integer_matmul(qa: np.ndarray, qb: np.ndarray) -> np.ndarray:
    """``qa @ qb`` of integer operands with ``|q| < 2**26`` (float64), exactly, as int64.

    Why float64 products: PyTorch has no BLAS for integers, and its own int64 kernel is slow
    where the CPU has no 64-bit vector multiply (about 30 times slower than a float64 product on
    an AVX2 CPU). A product of two 26-bit integers has 52 bits, and a sum of them does not fit
    float64's 53. So the smaller operand is split into 13-bit limbs, ``q = hi * 2**13 + lo``, and
    the two limbs are multiplied with the other operand in one product: every term is below
    ``2**39``, every partial sum of up to ``2**10`` terms (the most :func:`_fixed_point_product`
    lets through) below ``2**49``, and float64 holds each exactly. The BLAS's order of additions,
    vector width and use of FMA then change nothing, and ``hi * 2**13 + lo``, summed in int64, is
    the exact integer product on every CPU. The product itself is PyTorch's (MKL's DGEMM).
    """
    split_a = qa.size <= qb.size
    q = qa if split_a else qb
    hi = np.floor(q * 2.0**-_LIMB_BITS)
    lo = q - hi * 2.0**_LIMB_BITS  # 0 <= lo < 2**13, exactly
    with torch._C.DisableTorchFunction():  # float products of integers: not FixedPointMatmuls' to take
        if split_a:  # the limbs as two blocks of rows: [2M, K] @ [K, N]
            both = torch.matmul(torch.from_numpy(np.concatenate([hi, lo], -2)), torch.from_numpy(qb)).numpy()
            high, low = both[..., :qa.shape[-2], :], both[..., qa.shape[-2]:, :]
        else:  # two blocks of columns: [M, K] @ [K, 2N]
            both = torch.matmul(torch.from_numpy(qa), torch.from_numpy(np.concatenate([hi, lo], -1))).numpy()
            high, low = both[..., :qb.shape[-1]], both[..., qb.shape[-1]:]
    c = high.astype(np.int64)
    c *= 1 << _LIMB_BITS
    c += low.astype(np.int64)
    return c


def _fixed_point_product(qa: np.ndarray, sa: int, qb: np.ndarray, sb: int) -> torch.Tensor:
    """``(qa @ qb) * 2**-(sa + sb)`` in float32: an exact integer product, rounded once.

    The rounding is PyTorch's for an int64 tensor times a Python float (a float32 result: the
    integer converted to float32, times the scale converted to float32), done the same way.
    """
    need = max(qa.shape[-1] - 1, 1).bit_length()  # ceil(log2(K)) bits for the sum of K terms
    if need > _INT64_SPARE_BITS:  # a long sum: drop low bits first (exact shifts) so it cannot overflow
        da, db = (need - _INT64_SPARE_BITS + 1) // 2, (need - _INT64_SPARE_BITS) // 2
        qa, sa, qb, sb = np.floor(qa * 2.0**-da), sa - da, np.floor(qb * 2.0**-db), sb - db
    c = _exact_integer_matmul(qa, qb).astype(np.float32)  # integers: the order of the additions does not matter
    s = -(sa + sb)
    if -126 <= s <= 127:
        c *= np.float32(2.0**s)
    else:
        c *= np.float32(2.0**-sa)
        c *= np.float32(2.0**-sb)
    return torch.from_numpy(c)


class _FixedPointMatmul(torch.autograd.Function):
    """``a @ b`` (same batch dimensions, or both 2-D, float32) through :func:`_fixed_point_product`,
    forward and backward. The backward reuses the forward's fixed-point operands, so the
    gradient is exactly that of the product the forward computed."""

    @staticmethod
    def forward(ctx, a, b):
        if a.dtype != torch.float32 or b.dtype != torch.float32:
            raise NotImplementedError(f"toy training: fixed-point products take float32, got {a.dtype} and {b.dtype}")
        qa, sa = _to_fixed_point(a)
        qb, sb = _to_fixed_point(b)
        ctx.operands, ctx.shifts = (qa, qb), (sa, sb)
        return _fixed_point_product(qa, sa, qb, sb)

    @staticmethod
    def backward(ctx, grad):
        qa, qb = ctx.operands
        sa, sb = ctx.shifts
        qg, sg = _to_fixed_point(grad)
        ga = _fixed_point_product(qg, sg, np.swapaxes(qb, -1, -2), sb) if ctx.needs_input_grad[0] else None
        gb = _fixed_point_product(np.swapaxes(qa, -1, -2), sa, qg, sg) if ctx.needs_input_grad[1] else None
        return ga, gb


def _fixed_point_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if a.dim() > 2 and b.dim() == 2:  # a linear layer: fold the leading dimensions into the rows
        return _FixedPointMatmul.apply(a.reshape(-1, a.shape[-1]), b).view(*a.shape[:-1], b.shape[-1])
    if a.dim() < 2 or a.shape[:-2] != b.shape[:-2]:
        raise NotImplementedError(f"toy training: no fixed-point product of shapes {tuple(a.shape)} and {tuple(b.shape)}")
    return _FixedPointMatmul.apply(a, b)


def _linear_args(input, weight, bias=None):  # noqa: A002 (torch.nn.functional.linear's names)
    return input, weight, bias


class FixedPointMatmuls(TorchFunctionMode):
    """Inside ``with FixedPointMatmuls():`` nothing of the toy GPT-2's training reaches MKL but exact products.

    Why: MKL picks its code by the CPU (vendor, vector units), and a different code path rounds
    differently. The matrix products (``addmm`` of the Conv1D layers, ``linear`` of the
    unembedding, ``matmul`` of eager attention) become :class:`_FixedPointMatmul`, exact integer
    sums; ``tanh`` (of GPT-2's ``gelu_new``), which PyTorch hands to MKL's vector math library,
    becomes ``2 sigmoid(2x) - 1`` with PyTorch's own sigmoid. Other products, and the other
    functions PyTorch takes from MKL's vector math, raise instead of slipping through.
    """

    _MATMULS = {torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.mm, torch.Tensor.mm,
                torch.bmm, torch.Tensor.bmm}
    _TANH = {torch.tanh, torch.Tensor.tanh, torch.nn.functional.tanh}
    _POW = {torch.pow, torch.Tensor.pow, torch.Tensor.__pow__}  # pow(x, 0.5) is a square root
    _REFUSED = {torch.einsum, torch.baddbmm, torch.Tensor.baddbmm, torch.addbmm, torch.addmv, torch.mv, torch.dot,
                torch.vdot, torch.inner, torch.tensordot, torch.Tensor.addmm, torch.Tensor.__rmatmul__, torch.addmm,
                torch.nn.functional.scaled_dot_product_attention, torch.nn.functional.bilinear}
    _REFUSED |= {f for name in ("exp", "log", "log2", "log10", "sqrt", "tanh", "erf", "erfc", "erfinv", "sin", "cos",
                                "tan", "asin", "acos", "atan", "trunc")  # PyTorch's float kernels from MKL's vector math
                 for f in (getattr(torch, name), getattr(torch.Tensor, name), getattr(torch.Tensor, name + "_"))}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not any(isinstance(a, torch.Tensor) and a.is_floating_point() for a in (*args, *kwargs.values())):
            return func(*args, **kwargs)  # integers (the fixed-point products themselves), indices, shapes
        if func in self._MATMULS and not kwargs:
            return _fixed_point_matmul(*args)
        if func is torch.addmm and set(kwargs) <= {"beta", "alpha"} and kwargs.get("beta", 1) == kwargs.get("alpha", 1) == 1:
            bias, a, b = args
            return _fixed_point_matmul(a, b) + bias
        if func is torch.nn.functional.linear:
            x, weight, bias = _linear_args(*args, **kwargs)
            y = _fixed_point_matmul(x, weight.t())
            return y if bias is None else y + bias
        if func in self._TANH and not kwargs:
            return 2 * torch.sigmoid(2 * args[0]) - 1
        sqrt_by_pow = func in self._POW and len(args) > 1 and isinstance(args[1], (int, float)) and args[1] == 0.5
        if func in self._REFUSED or func in self._MATMULS or sqrt_by_pow:
            raise NotImplementedError(f"toy training: {getattr(func, '__name__', func)} would reach MKL (its BLAS or "
                                      f"vector math), whose results depend on the CPU")
        return func(*args, **kwargs)


def weights_sha256(model) -> str:
    """SHA-256 of a model's parameters and buffers, in name order, as raw float bytes.

    Why: two trainings agree bit for bit exactly when their hashes agree; the training log
    records it so that a run on another machine can be compared with one line.
    """
    import hashlib

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tensor.dtype).encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def hash_problem(log: dict, default_recipe: dict) -> str | None:
    """``None`` if training log ``log`` (``default_recipe`` as a dict, seed 0) holds :data:`EXPECTED_WEIGHTS_SHA256`,
    else one line: both hashes and the likely cause.

    Why the cause: the portable training depends only on PyTorch's and transformers' code and on
    the CPU architecture, not on the CPU model, so a different hash points at one of those (or at
    a log that is not the default training at all).
    """
    got = log.get("weights_sha256")
    if got == EXPECTED_WEIGHTS_SHA256:
        return None
    head = f"toy weights sha256 {str(got)[:16]} differ from the expected {EXPECTED_WEIGHTS_SHA256[:16]}: "
    if (log.get("recipe") != default_recipe or log.get("seed") != 0 or log.get("portable") is not True
            or log.get("training_version") != TRAINING_VERSION):
        return head + "the log is not the portable training of the default recipe, seed 0, of this version"
    ran = {"torch": log.get("torch_version"), "transformers": log.get("transformers_version"), "machine": log.get("machine"),
           "libc": log.get("libc")}
    changed = [f"{k} {ran[k]} (expected {v})" for k, v in EXPECTED_VERSIONS.items() if ran[k] != v]
    if changed:
        return head + "trained with " + ", ".join(changed) + "; their kernels round differently"
    return (head + "same torch, transformers, machine type and C library, so the kernels that trained it are not the "
            "portable ones (did a float32 product or vector math reach MKL? is ATEN_CPU_CAPABILITY=default honoured?), or the training changed "
            "and toy.EXPECTED_WEIGHTS_SHA256 was not updated")
