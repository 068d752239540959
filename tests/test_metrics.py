"""Firing rates, sparsity and synaptic operations against values computed by hand on tiny networks."""

import math

import pytest
import torch

import models
from bench.metrics import COLUMNS, Counter, TimedCounter, is_spiking
from models.activity import Activity, Synapse


def tiny_snn(name: str, reset: str = "subtract"):
    """1 -> 1 -> 1 spiking net, T = 4, W1 = 4, W2 = 1, no biases (the example worked out below)."""
    model = models.build(f"{name}:n_in=1,hidden=1,n_out=1,time_steps=4,reset={reset}")
    with torch.no_grad():
        for layer, w in ((model.layer1, 4.0), (model.layer2, 1.0)):
            layer.fc.weight.fill_(w)
            layer.fc.bias.zero_()
    return model


@pytest.mark.parametrize("name", ["snn", "snn-reference"])
def test_snn_by_hand(name):
    """x = 0.5 with masks of 1: layer 1's current is 2 at every step (d = 0.9, theta = 1, p = 1.5, subtract):
    t=1: h=2, o=1, v=2-2.5=-0.5; t=2: h=2-0.45=1.55, o=0.55, v=-0.5. Steps 1..T-2 reach the logits: o1 = [1, 0.55].
    Layer 2 gets [o1_0=0, 1, 0.55] over steps 1..T-1: h=0 (o=0, v=0); h=1 (o=relu(0)=0, v=1); h=0.55+0.9=1.45 (o=0.45).
    """
    model = tiny_snn(name)
    act = model.activity(torch.tensor([[0.5]]), masks=torch.ones(4, 1, 1))
    torch.testing.assert_close(act.outputs["layer1"].flatten(), torch.tensor([1.0, 0.55]))
    torch.testing.assert_close(act.outputs["layer2"].flatten(), torch.tensor([0.0, 0.0, 0.45]))
    counter = Counter()
    counter.add(act)
    v = counter.values()
    assert v["layer1_firing_rate"] == 1.0 and v["layer1_silent_share"] == 0.0 and v["layer1_sparsity"] == 0.0
    assert v["layer1_mean_when_firing"] == pytest.approx(0.775)
    assert v["layer2_firing_rate"] == pytest.approx(1 / 3) and v["layer2_sparsity"] == pytest.approx(2 / 3)
    assert v["layer2_mean_when_firing"] == pytest.approx(0.45, rel=1e-6) and v["layer2_silent_share"] == 0.0
    assert v["activation_sparsity"] == pytest.approx(2 / 5)  # 0 + 2 zeros among 2 + 3 outputs
    assert v["dense_ops"] == 2 * 1 + 3 * 1  # (T-2) steps x 1 x 1 + (T-1) steps x 1 x 1
    assert v["effective_macs"] == 2 + 2  # layer 1: 0.5 twice; layer 2: 1 and 0.55 (0 skipped); graded: MACs
    assert v["effective_acs"] == 0


def test_snn_and_reference_count_the_same():
    torch.manual_seed(0)
    fast = models.build("snn:time_steps=12")
    ref = models.build("snn-reference:time_steps=12")
    ref.load_state_dict(fast.state_dict())
    with torch.no_grad():  # larger weights: more neurons fire, so the counts say something
        for m in (fast, ref):
            m.layer1.fc.weight.mul_(4)
    x, masks = torch.rand(16, 784) - 0.5, torch.rand(12, 16, 784)
    a, b = Counter(), Counter()
    a.add(fast.activity(x, masks))
    b.add(ref.activity(x, masks))
    va, vb = a.values(), b.values()
    assert va["layer1_firing_rate"] > 0.01
    assert va == pytest.approx(vb, rel=1e-6, nan_ok=True)


def test_ffn_by_hand_with_a_zero_weight_and_binary_inputs():
    """Binary inputs make accumulates; a zero weight does no operation; a unit that never fires is silent."""
    model = models.build("ffn:n_in=3,hidden=2,n_out=2")
    with torch.no_grad():
        fc1, _, fc2 = model.net
        fc1.weight.copy_(torch.tensor([[1.0, 1.0, 0.0], [-1.0, -1.0, -1.0]]))  # input 3 has one zero weight; unit 2 never fires
        fc1.bias.zero_()
        fc2.weight.copy_(torch.tensor([[1.0, 0.0], [2.0, 1.0]]))
        fc2.bias.zero_()
    x = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    counter = Counter()
    counter.add(model.activity(x))
    v = counter.values()
    # hidden = relu(x1 + x2) for unit 1: [1, 0, 2]; unit 2: 0 always
    assert v["layer1_firing_rate"] == pytest.approx(2 / 6) and v["layer1_sparsity"] == pytest.approx(4 / 6)
    assert v["layer1_silent_share"] == 0.5 and v["layer1_mean_when_firing"] == pytest.approx(1.5)
    assert math.isnan(v["layer2_firing_rate"])  # the FFN has one nonlinearity
    assert v["dense_ops"] == 3 * 2 + 2 * 2
    # layer 1, binary: non-zero inputs 2 + 0 + 2, fan-out of inputs 1, 2, 3 = 2, 2, 1 -> (1*2 + 1*1) + 0 + (2 + 2) = 7 ACs
    # layer 2, graded (2 is not a spike): non-zero hidden 1 (twice), fan-out of unit 1 = 2 -> 4 MACs
    assert v["effective_acs"] == pytest.approx(7 / 3) and v["effective_macs"] == pytest.approx(4 / 3)


def test_counts_add_up_over_batches_and_silence_is_over_the_whole_set():
    out1 = torch.tensor([[[0.0, 2.0]]])  # (steps=1, B=1, n=2): neuron 1 silent here ...
    out2 = torch.tensor([[[1.0, 0.0]]])  # ... and fires in the next batch: not silent over the set
    w = torch.ones(2, 2)
    counter = Counter()
    for out in (out1, out2):
        counter.add(Activity(torch.zeros(1, 2), [Synapse("layer1", out, w)], {"layer1": out}))
    v = counter.values()
    assert v["layer1_silent_share"] == 0.0 and v["layer1_firing_rate"] == 0.5 and v["layer1_mean_when_firing"] == 1.5
    # NeuroBench decides per call: batch 1's input [0, 2] is graded (1 input x fan-out 2 = 2 MACs), batch 2's [1, 0]
    # is spikes (2 ACs); per sample (2 samples) that is 1 and 1; dense: 2 inputs x 2 outputs per sample
    assert v["dense_ops"] == 4 and v["effective_macs"] == 1 and v["effective_acs"] == 1


def test_spike_detection():
    assert is_spiking(torch.tensor([0.0, 1.0, -1.0, 1.0]))
    assert not is_spiking(torch.tensor([[0.0, 1.0], [0.5, 1.0]]))  # a graded value after the first step
    assert not is_spiking(torch.tensor([[0.0, 1.0], [0.0, 0.25], [1.0, -1.0]]))  # ... in neither the first nor the last
    assert not is_spiking(torch.tensor([float("nan"), 1.0]))
    assert is_spiking(torch.zeros(0, 3))


def test_timed_counter_gives_every_column_and_its_seconds():
    model = models.build("snn:time_steps=6")
    counter = TimedCounter("cpu")
    counter.add(model.activity(torch.rand(4, 784) - 0.5))
    v = counter.values()
    assert list(v) == COLUMNS and v["metrics_seconds"] > 0
    assert v["dense_ops"] == 4 * 784 * 100 + 5 * 100 * 10


def test_the_columns_are_those_of_the_layers_the_registry_names():
    """Columns for each layer the model's entry declares: a declared layer without a nonlinearity is NaN (the FFN's
    layer2), an activity name nobody declared is an error, not a quiet loss."""
    from bench.schema import metric_columns

    x = torch.rand(4, 784) - 0.5
    counter = Counter(("layer1", "layer2", "layer3"))
    counter.add(models.build("ffn").activity(x))
    v = counter.values()
    assert list(v) == metric_columns(("layer1", "layer2", "layer3"))[1:]
    assert v["layer1_firing_rate"] > 0 and all(v[f"layer{n}_firing_rate"] != v[f"layer{n}_firing_rate"] for n in (2, 3))
    only_one = Counter(("layer1",))
    only_one.add(models.build("snn:time_steps=4").activity(x))
    with pytest.raises(ValueError, match="layer2.*not among the layers"):
        only_one.values()


def test_counts_on_cuda_equal_the_cpu_counts():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here")
    torch.manual_seed(0)
    model = models.build("snn:time_steps=16")
    with torch.no_grad():  # larger weights: both layers fire, so every count is compared
        model.layer1.fc.weight.mul_(4)
        model.layer2.fc.weight.mul_(4)
    x, masks = torch.rand(32, 784) - 0.5, torch.rand(16, 32, 784)
    cpu, cuda = Counter(), Counter()
    cpu.add(model.activity(x, masks))
    cuda.add(model.to("cuda").activity(x.cuda(), masks.cuda()))
    assert cpu.values()["layer2_firing_rate"] > 0
    assert cuda.values() == pytest.approx(cpu.values(), rel=1e-4)


# ---- memory accesses and NeuroBench's convention (issue 28) ----


def test_memory_accesses_by_hand_with_and_without_neuron_state():
    """Two samples, 3 steps, a 2 -> 2 layer with one zero weight, on 0/1 spikes: inputs [[1, 0], [1, 1], [0, 0]] for sample
    0 and all zeros for sample 1; weight [[1, 0], [2, 3]] (column 0 has 2 non-zero weights, column 1 one). Effective
    operations: 2 + 3 = 5 (sample 0), 0 (sample 1): 5 weight reads; non-zero inputs 3. Outputs (3 steps, 2 samples, 2
    neurons) with 4 non-zero: 4 writes. With state: 12 membrane reads and 12 writes more."""
    inputs = torch.zeros(3, 2, 2)
    inputs[0, 0, 0] = inputs[1, 0, 0] = inputs[1, 0, 1] = 1.0
    weight = torch.tensor([[1.0, 0.0], [2.0, 3.0]])
    out = torch.zeros(3, 2, 2)
    out[0, 0, 0] = out[1, 0, 1] = out[2, 0, 0] = out[2, 1, 1] = 1.0
    act = Activity(torch.zeros(2, 2), [Synapse("layer1", inputs, weight)], {"layer1": out})
    for stateful, reads, writes in ((False, 5 + 3, 4), (True, 5 + 3 + 12, 4 + 12)):
        counter = Counter(("layer1", "layer2"), stateful)
        counter.add(act)
        v = counter.values()
        assert v["effective_acs"] == 5 / 2 and v["neurobench_ops"] == 5 / 2
        assert v["memory_reads"] == reads / 2 and v["memory_writes"] == writes / 2


def test_neurobench_counts_a_static_input_at_every_step_where_snnbench_counts_it_once():
    """lif under direct encoding gives layer 1 the pixels once (inputs with one step) and layer 2 spikes at each of T
    steps: NeuroBench's count multiplies the first synapse's operations by T."""
    model = models.build("lif:encoding=direct,time_steps=5")
    x = torch.rand(3, 1, 28, 28) - 0.5
    act = model.activity(x)
    first, second = act.synapses
    assert first.inputs.shape[0] == 1 and second.inputs.shape[0] == 5
    counter = Counter()
    counter.add(act)
    v = counter.values()
    once = float(torch.count_nonzero(first.inputs)) * 100 / 3  # each non-zero pixel feeds 100 neurons
    assert v["effective_macs"] == pytest.approx(once)
    assert v["neurobench_ops"] == pytest.approx(5 * once + v["effective_acs"])
    rate = Counter()
    rate.add(models.build("lif:time_steps=5").activity(x))
    r = rate.values()
    assert r["neurobench_ops"] == pytest.approx(r["effective_macs"] + r["effective_acs"])  # every input changes each step


def test_the_report_says_where_the_two_energy_estimates_disagree():
    import pandas as pd

    from report.activity import memory_section

    costs = pd.DataFrame([
        {"device": "cpu", "model": "lif", "ffn": "ffn", "energy_pj": 2.0, "memory_reads": 100.0, "memory_writes": 20.0,
         "memory_pj": 600.0, "total_pj": 602.0, "energy_ratio": 0.5, "total_ratio": 2.0, "neurobench_ops": 10.0},
        {"device": "cpu", "model": "lif:encoding=direct", "ffn": "ffn", "energy_pj": 1.0, "memory_reads": 10.0,
         "memory_writes": 2.0, "memory_pj": 60.0, "total_pj": 61.0, "energy_ratio": 0.25, "total_ratio": 0.2,
         "neurobench_ops": 50.0},
        {"device": "cpu", "model": "ffn", "ffn": None, "energy_pj": 4.0, "memory_reads": 50.0, "memory_writes": 10.0,
         "memory_pj": 300.0, "total_pj": 304.0, "energy_ratio": math.nan, "total_ratio": math.nan, "neurobench_ops": 1.0},
    ])  # fmt: skip
    text = "\n".join(memory_section(costs))
    assert "**The estimates disagree** for lif on cpu: 0.5x ffn's energy counting operations only, 2x counting memory" in text
    assert (
        "lif:encoding=direct on cpu: 0.25x ffn's energy counting operations only, 0.2x counting memory too: both say cheaper"
    ) in text
    assert memory_section(costs.drop(columns=["total_pj"])) == []  # a run from before the memory columns: nothing
