import pytest
import torch

import models
from bench import data
from bench.loop import Schedule, epochs, evaluate, seed_everything, train_epoch


@pytest.fixture(scope="module")
def mini():
    return data.load("mnist-mini")


def test_schedule_lr_repeats_the_last_value():
    s = Schedule(epochs=5, lrs=(0.1, 0.05, 0.01))
    assert [s.lr(e) for e in range(1, 6)] == [0.1, 0.05, 0.01, 0.01, 0.01]


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


def test_training_is_reproducible_with_a_seed(mini):
    def run(seed):
        shuffle = seed_everything(seed, "cpu")
        model = models.build("snn:time_steps=4")
        return [(e, lr, tr.loss, te.accuracy) for e, lr, tr, te in epochs(model, mini, shuffle, Schedule(2, (0.1,), 0.5, 500, 2))]

    a, b, c = run(0), run(0), run(1)
    assert a == b and a != c
    assert [r[:2] for r in a] == [(1, 0.1), (2, 0.1)]
