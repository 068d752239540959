"""The Triton kernels of ``snn``'s neuron recurrence (models/triton_neurons.py), against the torch loops they replace.

On a GPU they run as compiled; here, without one, in Triton's interpreter (``TRITON_INTERPRET=1``, which must be set
before Triton is first imported: so in a child process) on CPU tensors. The interpreter runs the kernels' own code, so a
wrong index, mask, order of operations or gradient formula fails here as it would on the device.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from models import triton_neurons

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(triton_neurons.triton is None, reason="Triton is not installed")

CHECK = textwrap.dedent(
    """
    import torch
    from models import snn, triton_neurons as tn
    assert tn.interpreted() and tn.available()
    NeuronRecurrence = snn.NeuronRecurrence
    failures = []
    # (T, B, N): a short and a long sequence; B * N not a multiple of the block (a masked tail), and more than one block
    for T, B, N in [(1, 3, 5), (4, 2, 70), (37, 3, 100)]:
        for proportional in (False, True):
            for scale in (1.0, 4.0):  # 4: many neurons fire, many resets
                torch.manual_seed(T * 7 + B)
                current = (torch.rand(T, B, N) - 0.3) * scale
                current[0, 0, :3] = torch.tensor([float("nan"), 1.0 + 0.0, 1.0])  # NaN stays NaN; h = theta exactly
                args = (current, 0.9, 1.0, 1.5, proportional)
                for keep in ("states", "outputs", "both"):
                    want_gates, got_gates = (torch.empty(T, B, N, dtype=torch.bool) for _ in range(2))
                    want = snn.simulate_torch(*args, keep, want_gates)
                    got = tn.snn_forward(*args, keep, got_gates)
                    for w, g in zip(want, got):
                        if (w is None) != (g is None) or (w is not None and not torch.equal(w.nan_to_num(7), g.nan_to_num(7))):
                            failures.append(f"forward T={T} B={B} N={N} prop={proportional} keep={keep}")
                    if not torch.equal(want_gates, got_gates):
                        failures.append(f"gates T={T} B={B} N={N} prop={proportional} keep={keep}")
                gates = torch.rand(T, B, N) < 0.3
                slope = (1.0 - 1.5 / 1.0) if proportional else 0.0
                for states in (False, True):
                    for expanded in (False, True):
                        grad = torch.randn(B, N).expand(T, B, N) if expanded else torch.randn(T, B, N)
                        want = NeuronRecurrence.backward_torch(grad, gates, 0.9, slope, states)
                        got = tn.snn_backward(grad, gates, 0.9, slope, states)
                        err = (got - want).abs().max().item()
                        if not err <= 1e-6 * max(want.abs().max().item(), 1e-12):
                            failures.append(f"backward T={T} B={B} N={N} slope={slope} states={states} "
                                            f"expanded={expanded}: {err:.3g}")
    from models import lif
    for T, B, N in [(1, 2, 3), (25, 3, 70), (9, 2, 130)]:
        for zero in (False, True):
            for held in (False, True):
                torch.manual_seed(T + B + zero)
                current = torch.rand(B, N) * 1.5 if held else torch.rand(T, B, N) * 1.5  # many spikes, many resets
                current[..., 0] = 1.0  # u reaches the threshold exactly: no spike (u > threshold)
                want = lif.simulate_torch(current, T, 0.95, 1.0, zero)
                got, spikes = tn.lif_forward(current, T, 0.95, 1.0, zero, spikes=True)
                if not torch.equal(got, want) or not torch.equal(spikes, (want > 1.0).float()):
                    failures.append(f"lif T={T} B={B} N={N} zero={zero} held={held}: "
                                    f"{(got - want).abs().max().item():.3g}")
                if tn.lif_forward(current, T, 0.95, 1.0, zero)[1] is not None:
                    failures.append("lif: spikes not asked for, but written")
    # the whole models: the kernels inside snn's layered path (given masks) and lif's against the references
    import models
    specs = [("snn", ":time_steps=6,hidden=20", "masks"), ("lif", ":time_steps=5,hidden=20", "draws"),
             ("lif", ":time_steps=5,hidden=20,reset=zero,readout=spikes", "draws")]
    for name, keys, given in specs:
        torch.manual_seed(1)
        ref, fast = models.build(f"{name}-reference{keys}"), models.build(name + keys)
        fast.load_state_dict(ref.state_dict())
        x, y = torch.rand(4, 784) - 0.5, torch.randint(0, 10, (4,))  # pixel / 255 - 0.5, as the data gives
        draws = torch.rand(ref.config.time_steps, 4, 784)
        out = []
        for m in (ref, fast):
            logits = m(x, **{given: draws})
            torch.nn.functional.cross_entropy(logits, y).backward()
            out.append([logits.detach(), *[p.grad for p in m.parameters()]])
        for w, g in zip(*out):
            if not torch.allclose(g, w, rtol=1e-5, atol=1e-7):
                failures.append(f"{name}{keys}: max error {(g - w).abs().max().item():.3g}")
    print("FAILURES" if failures else "OK", *failures, sep="\\n")
    """
)


def run_interpreted(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRITON_INTERPRET": "1", "SNNBENCH_NATIVE": "0", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


def test_kernels_equal_the_torch_loops_in_the_interpreter():
    """snn: forward bit for bit (states, outputs, gates; both resets; NaN and h = theta), backward to float32 rounding
    (both resets, states or outputs kept, a gradient expanded over t). lif: forward bit for bit (both resets, a
    current per step or held). And both models through them against their references.
    SNNBENCH_NATIVE=0: the C kernels stand aside, so the CPU tensors reach the Triton kernels."""
    done = run_interpreted(CHECK)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "OK", done.stdout[-3000:]


def test_the_kernels_stand_aside_where_they_do_not_apply():
    """Without a GPU and without the interpreter: None, and the torch loops run (same results as before)."""
    current = torch.rand(3, 2, 5)
    if not torch.cuda.is_available() and not triton_neurons.interpreted():
        assert triton_neurons.snn_forward(current, 0.9, 1.0, 1.5, False, "states") is None
        assert triton_neurons.snn_backward(current, current > 0.5, 0.9, 0.0, True) is None
    grad = current.clone().requires_grad_()
    with torch.enable_grad():  # a graph to record: only torch's operations record one
        assert triton_neurons.applies(grad) is False
    assert triton_neurons.applies(current.double()) is False


def test_turned_off_by_the_environment(monkeypatch):
    monkeypatch.setenv(triton_neurons.DISABLE, "0")
    assert triton_neurons.available() is False
