"""Layer 1 of the 2018 SNN without keeping its masked input: ``current_t = (u_t * x) W^T + b`` for every step.

The masked input ``u_t * x`` (T x B x 784: 400 MB at B 1000, T 128) is what autograd would keep for the
weight gradient. The C generator (models/_masks.c) is counter-based: the number at element ``i`` depends on
``(key, i)`` alone. So the forward draws the masks a chunk of steps at a time into one small buffer, multiplies
each chunk as it comes (while it is still in the cache), and keeps only ``x`` and the key; the backward draws the
same chunks again, bit for bit, for ``dW = sum_t dI_t^T (u_t * x)``. The price is a second pass of the generator;
the memory of the masked input goes from T steps to one chunk.

Under bf16 autocast each chunk and the weight are cast to bfloat16 for the matmuls, as autocast would cast them,
and the currents come back in float32 (the neuron state is float32).
"""

from __future__ import annotations

import torch

from models import dispatch
from models import masks as mask_rng

CHUNK_ELEMENTS = 1 << 20  # numbers per chunk: 1M floats, 4 MB: one step at B 1000, still in the cache for its matmul


def available(x: torch.Tensor, weight: torch.Tensor, steps: int) -> bool:
    """Whether ``steps`` steps of ``x`` (B, n) can take this path with ``weight`` (h, n): both float32 on the CPU, no
    gradient wanted for x, the C generator built, and at least masks.MIN_PARALLEL numbers: below that,
    masks.masked_uniform_ draws with torch's generator, and the masks must be those the stored path draws from the
    same seed. (A weight of another width takes the stored path, which names the mismatch.)"""
    return (x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32 and not x.requires_grad
            and x.shape[-1] == weight.shape[-1] and steps * x.numel() >= mask_rng.MIN_PARALLEL
            and dispatch.ready("masks.rows", "cpu"))  # fmt: skip


def _dtype() -> torch.dtype:
    return torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else torch.float32


class MaskedLinear(torch.autograd.Function):
    """``(x (B, n), weight (h, n), bias (h), steps, key) -> currents (steps, B, h)``, float32."""

    @staticmethod
    def forward(ctx, x, weight, bias, steps: int, key: int):
        B, n = x.shape
        dtype = _dtype()
        per_chunk = max(1, CHUNK_ELEMENTS // (B * n))
        out = torch.empty(steps, B, weight.shape[0], dtype=torch.float32)
        w, b = weight.to(dtype), bias.to(dtype)
        buf = torch.empty(min(per_chunk, steps), B, n)
        with torch.autocast("cpu", enabled=False):
            for t0 in range(0, steps, per_chunk):
                chunk = buf[: min(per_chunk, steps - t0)]
                mask_rng.masked_uniform_rows_(chunk, x, key, t0 * B)
                rows = out[t0 : t0 + len(chunk)].view(-1, out.shape[-1])
                if dtype == torch.float32:
                    torch.addmm(b, chunk.view(-1, n), w.t(), out=rows)  # straight into the currents
                else:
                    rows.copy_(torch.addmm(b, chunk.view(-1, n).to(dtype), w.t()))
        ctx.save_for_backward(x, weight)
        ctx.steps, ctx.key, ctx.per_chunk, ctx.dtype = steps, key, per_chunk, dtype
        return out

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        B, n = x.shape
        steps, key, per_chunk, dtype = ctx.steps, ctx.key, ctx.per_chunk, ctx.dtype
        grad_weight = torch.zeros_like(weight)
        buf = torch.empty(min(per_chunk, steps), B, n)
        with torch.autocast("cpu", enabled=False):
            for t0 in range(0, steps, per_chunk):
                chunk = buf[: min(per_chunk, steps - t0)]
                mask_rng.masked_uniform_rows_(chunk, x, key, t0 * B)  # the forward's numbers again, bit for bit
                g = grad[t0 : t0 + len(chunk)].reshape(-1, grad.shape[-1])
                if dtype == torch.float32:
                    grad_weight.addmm_(g.t(), chunk.view(-1, n))  # accumulated in place
                else:
                    grad_weight += torch.mm(g.t().to(dtype), chunk.view(-1, n).to(dtype)).float()
        return None, grad_weight, grad.sum((0, 1)).to(weight.dtype), None, None


def masked_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, steps: int) -> torch.Tensor:
    """The currents of ``steps`` steps of fresh masks, drawn with a key from the global generator (as
    ``masks.masked_uniform_`` draws it, so a seeded run draws the same masks either way)."""
    key = mask_rng.draw_key()
    return MaskedLinear.apply(x, weight, bias, steps, key)
