"""pytest-benchmark timings of every registered model at a small size (``tox -e bench`` saves the JSON).

The timed callable is the training loop's own step (or forward pass), with the device
synchronized inside it, so a GPU's queued work is counted.
"""

import pytest
import torch

import models
from bench.loop import inference_step, training_step
from bench.metrics import Counter
from bench.timing import synchronizer

BATCH, TIME_STEPS = 100, 16
BUILT_IN = [n for n in models.available() if models.ORIGIN.get(n) == "built-in"]  # not an installed plug-in
DEVICES = ["cpu", "cuda"]


CONV_TIME_STEPS = 4  # csnn and its step-by-step peers: a 28 x 28 image through two convolutions per step costs ~10x


def time_steps(name: str) -> int:
    return CONV_TIME_STEPS if "in_height" in models.model_class(name).Config.__dataclass_fields__ else TIME_STEPS


def build(name: str, device: str) -> torch.nn.Module:
    fields = models.model_class(name).Config.__dataclass_fields__
    spec = f"{name}:time_steps={time_steps(name)}" if "time_steps" in fields else name
    return models.build(spec).to(device)


@pytest.fixture(params=DEVICES)
def device(request):
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device here")
    return request.param


@pytest.fixture
def batch(device):
    x = torch.rand(BATCH, 1, 28, 28, device=device) - 0.5
    return x, torch.randint(0, 10, (BATCH,), device=device)


def _info(benchmark, name, device, what, precision="fp32"):
    benchmark.group = f"{name} {what}" + (f" {precision}" if precision != "fp32" else "")  # a group per precision
    benchmark.extra_info.update(device=device, batch_size=BATCH, time_steps=time_steps(name), step=what, precision=precision)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name", BUILT_IN)
def test_training_step(benchmark, name, device, batch, precision):
    model = build(name, device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)
    sync = synchronizer(device)
    _info(benchmark, name, device, "train", precision)

    def step():
        out = training_step(model, optimizer, *batch, precision)
        sync()
        return out

    loss, logits = benchmark(step)
    assert logits.shape == (BATCH, 10) and torch.isfinite(loss)


@pytest.mark.parametrize("metrics", [False, True], ids=["plain", "metrics"])
@pytest.mark.parametrize("name", BUILT_IN)
def test_inference(benchmark, name, device, batch, metrics):
    """The forward pass alone, and the evaluation pass as bench.run does it: activity plus the counting of
    bench.metrics (both in the model's "inference" group, so the metrics' overhead reads off the table)."""
    model = build(name, device).eval()
    layers = models.parse_spec(name).info.layers  # csnn's and cnn's three: their metric columns
    sync = synchronizer(device)
    _info(benchmark, name, device, "inference")
    benchmark.extra_info["metrics"] = metrics

    @torch.no_grad()
    def step():
        counter = Counter(layers) if metrics else None
        out = inference_step(model, *batch, counter)
        values = counter.values() if metrics else {}  # reads the sums back: a sync
        sync()
        return out, values

    (loss, logits), values = benchmark(step)
    assert logits.shape == (BATCH, 10) and torch.isfinite(loss)
    assert not metrics or values["dense_ops"] > 0
