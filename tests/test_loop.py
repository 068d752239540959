import pytest
import torch

import models
from bench import data
from bench.config import TrainConfig
from bench.loop import Stopped, evaluate, train_epoch


@pytest.fixture(scope="module")
def mini():
    return data.load("mnist-mini")


def test_schedule_lr_repeats_the_last_value():
    s = TrainConfig(epochs=5, lrs=(0.1, 0.05, 0.01))
    assert [s.lr(e) for e in range(1, 6)] == [0.1, 0.05, 0.01, 0.01, 0.01]


def test_stop_abandons_the_epoch_before_the_next_batch(mini):
    model, asked = models.build("ffn"), []

    def stop():
        asked.append(1)
        return len(asked) > 2  # two batches, then stop

    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(Stopped):
        train_epoch(model, mini.train, opt, batch_size=100, generator=torch.Generator().manual_seed(0), stop=stop)
    assert len(asked) == 3
    with pytest.raises(Stopped):
        evaluate(model, mini.test, batch_size=100, stop=lambda: True)


@pytest.mark.parametrize("spec", ["ffn", "snn:time_steps=8"])
def test_loss_falls_within_a_few_batches(mini, spec):
    torch.manual_seed(0)
    model = models.build(spec)
    small = data.Split(mini.train.images[:1000], mini.train.labels[:1000])
    before = evaluate(model, small, batch_size=500)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    for _ in range(3):
        train_epoch(model, small, opt, batch_size=100, generator=torch.Generator().manual_seed(0))
    after = evaluate(model, small, batch_size=500)
    assert after.loss < 0.8 * before.loss
    assert after.accuracy > before.accuracy + 0.2


def test_evaluate_reports_mean_loss_per_sample_and_counts(mini):
    model = models.build("ffn")
    full = evaluate(model, mini.test, batch_size=300)  # 300 does not divide 1000: a short last batch
    with torch.no_grad():
        want = torch.nn.functional.cross_entropy(model(mini.test.images), mini.test.labels).item()
    assert full.samples == 1000 and full.loss == pytest.approx(want, rel=1e-5)
    capped = evaluate(model, mini.test, batch_size=300, max_batches=2)
    assert capped.samples == 600 and capped.seconds > 0
