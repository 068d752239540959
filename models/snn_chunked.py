"""``snn``'s training step on the CPU, both layers, a chunk of time steps at a time.

models/snn.py's layered path runs each stage over all T steps before the next: layer 1's currents, its outputs,
layer 2's currents, and in backward their gradients, each a T x B x hidden tensor (50 MB at B 1000, T 128)
written out, read back, and allocated fresh every step (a fresh 50 MB costs some 10 ms of page faults). Here a
chunk of steps (masked_linear.CHUNK_ELEMENTS numbers of input: one step at B 1000) goes through every stage while
it is in the cache:

    forward, chunks in order:   masks -> layer 1 GEMM -> layer 1 recurrence -> layer 2 GEMM -> layer 2 recurrence
    backward, in reverse:       layer 2 recurrence -> dL/do1 and W2's gradient -> layer 1 recurrence
                                -> the masks drawn again -> W1's gradient

the neuron states carried from chunk to chunk in the C kernels' ``carry`` (models/_neurons.c), dL/dh carried back
the same way. Kept for backward: x, the masks' key (masked_linear's regeneration, bit for bit), layer 1's outputs
(for W2's gradient) and both layers' gates. Layer 1's outputs and gates live in buffers kept on the module and
reused from step to step; autograd's version counter guards them (a backward through a graph whose buffers a later
forward overwrote raises instead of using them).

The same numbers as the layered path, which equals ``snn-reference``: the forward bit for bit where the GEMMs
round alike, the gradients up to float32 summation order (sums over chunks). Under bf16 autocast the GEMMs run in
bfloat16 on casts of their operands, as autocast would run them (the masks written in bfloat16 by the generator
itself, rounded as a cast rounds them), and the neuron state stays float32.
"""

from __future__ import annotations

import torch

from models import dispatch, fused, masked_linear
from models import masks as mask_rng

# the steps of a chunk with the neuron states carried over: C only, called a chunk at a time once ``available`` chose
dispatch.register("snn.steps", "neurons", dispatch.SPEED, dispatch.Backend(fused.PROVIDER, fused.snn_steps))
dispatch.register("snn.steps_backward", "neurons", dispatch.ROUNDING, dispatch.Backend(fused.PROVIDER, fused.snn_steps_backward))


def available(x: torch.Tensor, weight: torch.Tensor, time_steps: int) -> bool:
    """Whether this path takes ``x`` (B, n): T >= 3 (layer 1 runs T - 2 steps), masked_linear's conditions for those
    steps (the same masks as the other paths from the same seed), and the neuron kernels built (models/dispatch.py
    says whether: chosen once per training step, the chunks then call the C kernels directly)."""
    return time_steps >= 3 and masked_linear.available(x, weight, time_steps - 2) and dispatch.ready("snn.steps", "cpu")


def _kept(owner: object, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A buffer kept on ``owner`` across calls; on reuse its version counter goes up, so that a graph which saved it
    before raises in backward rather than reading what a later forward wrote."""
    buffers = owner.__dict__.setdefault("_chunked_buffers", {})
    buf = buffers.get(name)
    if buf is None or buf.shape != shape or buf.dtype != dtype:
        buf = buffers[name] = torch.empty(shape, dtype=dtype)
    else:
        torch.autograd.graph.increment_version(buf)
    return buf


class ChunkedSNN(torch.autograd.Function):
    """``(x (B, n), w1, b1, w2, b2, owner, T, decay, threshold, penalty, proportional, key) -> logits (B, n_out)``:
    snn's forward with fresh masks of ``key`` (the mean over T of layer 2's states v2_0 = 0, v2_1 .. v2_{T-1})."""

    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2, owner, T: int, decay, threshold, penalty, proportional: bool, key: int):
        B, n = x.shape
        hidden, n_out = w1.shape[0], w2.shape[0]
        steps1 = T - 2  # layer 2 sees o1_0 = 0, o1_1 .. o1_{T-2}: layer 1 runs T - 2 steps, layer 2 T - 1
        dtype = masked_linear._dtype()
        per = max(1, masked_linear.CHUNK_ELEMENTS // (B * n))
        out1 = _kept(owner, "out1", (steps1, B, hidden), torch.float32)
        gates1 = _kept(owner, "gates1", (steps1, B, hidden), torch.bool)
        states2 = torch.empty(T - 1, B, n_out)
        gates2 = torch.empty(T - 1, B, n_out, dtype=torch.bool)
        v1, v2 = torch.zeros(B, hidden), torch.zeros(B, n_out)
        buf = torch.empty(min(per, steps1), B, n, dtype=dtype)  # bf16: the kernel writes the masks in bf16
        cur1 = torch.empty(min(per, steps1) * B, hidden)
        w1c, b1c, w2c, b2c = w1.to(dtype), b1.to(dtype), w2.to(dtype), b2.to(dtype)
        args = (decay, threshold, penalty, proportional)
        with torch.autocast("cpu", enabled=False):
            # layer 2's first step: its current is W2 o1_0 + b2 = b2
            first2 = b2.detach().expand(1, B, n_out).contiguous()
            fused.snn_steps(first2, *args, v2, states=states2[:1], gates=gates2[:1])
            for t0 in range(0, steps1, per):
                c = min(per, steps1 - t0)
                chunk = mask_rng.masked_uniform_rows_(buf[:c], x, key, t0 * B)
                cur = cur1[: c * B]
                if dtype == torch.float32:
                    torch.addmm(b1, chunk.view(-1, n), w1.t(), out=cur)
                else:
                    cur.copy_(torch.addmm(b1c, chunk.view(-1, n), w1c.t()))
                o1 = out1[t0 : t0 + c]
                fused.snn_steps(cur.view(c, B, hidden), *args, v1, outputs=o1, gates=gates1[t0 : t0 + c])
                cur2 = torch.addmm(b2c, o1.view(-1, hidden).to(dtype), w2c.t()).float().view(c, B, n_out)
                fused.snn_steps(cur2, *args, v2, states=states2[1 + t0 : 1 + t0 + c], gates=gates2[1 + t0 : 1 + t0 + c])
        ctx.save_for_backward(x, w1, w2, out1, gates1, gates2)
        ctx.T, ctx.decay, ctx.key, ctx.per, ctx.dtype = T, decay, key, per, dtype
        ctx.slope = (1.0 - penalty / threshold) if proportional else 0.0
        return states2.sum(0) / T  # the mean over all T kept states, v2_0 = 0 included

    @staticmethod
    def backward(ctx, grad_logits):
        x, w1, w2, out1, gates1, gates2 = ctx.saved_tensors
        T, d, slope, key, per, dtype = ctx.T, ctx.decay, ctx.slope, ctx.key, ctx.per, ctx.dtype
        B, n = x.shape
        hidden, n_out = w1.shape[0], w2.shape[0]
        steps1 = T - 2
        g = (grad_logits / T).contiguous()  # dL/dv2_t, the same for every kept state
        a1, a2 = torch.zeros(B, hidden), torch.zeros(B, n_out)  # dL/dh of the step after the chunk, per layer
        gw1, gb1 = torch.zeros_like(w1), torch.zeros(hidden)
        gw2, gb2 = torch.zeros_like(w2), torch.zeros(n_out)
        rows = min(per, steps1) * B
        gc2, go1, gc1 = torch.empty(rows, n_out), torch.empty(rows, hidden), torch.empty(rows, hidden)
        buf = torch.empty(min(per, steps1), B, n, dtype=dtype)
        w2c = w2.to(dtype)
        with torch.autocast("cpu", enabled=False):
            for t0 in reversed(range(0, steps1, per)):
                c = min(per, steps1 - t0)
                # layer 2, steps 1 + t0 .. (their currents W2 o1_t + b2): dL/dI2, then dL/do1 and W2's gradient
                c2 = gc2[: c * B]
                fused.snn_steps_backward(g.expand(c, B, n_out), gates2[1 + t0 : 1 + t0 + c], c2.view(c, B, n_out), d,
                                         slope, True, a2)  # fmt: skip
                o1 = out1[t0 : t0 + c].view(-1, hidden)
                if dtype == torch.float32:
                    torch.mm(c2, w2, out=go1[: c * B])
                    gw2.addmm_(c2.t(), o1)
                else:
                    go1[: c * B].copy_(torch.mm(c2.to(dtype), w2c))
                    gw2 += torch.mm(c2.t().to(dtype), o1.to(dtype)).float()
                gb2 += c2.sum(0)
                # layer 1, steps t0 ..: dL/dI1, then W1's gradient on the chunk's masks drawn again
                c1 = gc1[: c * B]
                fused.snn_steps_backward(go1[: c * B].view(c, B, hidden), gates1[t0 : t0 + c], c1.view(c, B, hidden), d,
                                         slope, False, a1)  # fmt: skip
                chunk = mask_rng.masked_uniform_rows_(buf[:c], x, key, t0 * B).view(-1, n)
                if dtype == torch.float32:
                    gw1.addmm_(c1.t(), chunk)
                else:
                    gw1 += torch.mm(c1.t().to(dtype), chunk).float()
                gb1 += c1.sum(0)
            # layer 2's first step (current b2)
            c2 = gc2[:B]
            fused.snn_steps_backward(g.expand(1, B, n_out), gates2[:1], c2.view(1, B, n_out), d, slope, True, a2)
            gb2 += c2.sum(0)
        return None, gw1, gb1, gw2, gb2, None, None, None, None, None, None, None


def logits(model, x: torch.Tensor) -> torch.Tensor:
    """``model`` (an ``snn``)'s logits for ``x`` (B, n_in) with fresh masks, by ChunkedSNN."""
    c = model.config
    w1, b1, w2, b2 = model.layer1.fc.weight, model.layer1.fc.bias, model.layer2.fc.weight, model.layer2.fc.bias
    key = mask_rng.draw_key()  # from the global generator, as masked_uniform_ draws it: a seeded run repeats
    args = (c.decay, c.threshold, c.penalty, c.reset == "proportional")
    return ChunkedSNN.apply(x, w1, b1, w2, b2, model, c.time_steps, *args, key)
