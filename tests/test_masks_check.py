"""models.masks checks what it is given: a ValueError naming the problem, never a read out of bounds or a
silent broadcast, on the native kernel and the torch fallback alike (issue 12: ``snn:n_in=10`` on 784-pixel
rows trained on garbage with exit status 0)."""

import pytest
import torch

from models import masks as mask_rng

BIG = (2, 1000, 600)  # 1.2 million numbers: above MIN_PARALLEL, so the native kernel or the torch chunks fill it
SMALL = (3, 4, 5)  # one torch.uniform_ call


def wrong_inputs(shape):
    T, B, n = shape
    return [
        (torch.empty(T, B, n), torch.rand(B, 784), f"x must be (B, n) = {(B, n)}, the last two dims of out"),
        (torch.empty(T, B, n), torch.rand(n), f"x must be (B, n) = {(B, n)}, the last two dims of out {shape}; got {(n,)}"),
        (torch.empty(T, B, n), torch.rand(1, n), "got (1, "),  # would broadcast silently
        (torch.empty(T, B, n), torch.rand(T, B, n), f"got {shape}"),
        (torch.empty(T, B, n), torch.rand(n, B), "x must be (B, n)"),  # the same numbers, read with the wrong stride
        (torch.empty(T * B * n), torch.rand(B, n), "out must be (..., B, n) to be masked by x (B, n), got shape"),
        (torch.empty(T, n, B).transpose(1, 2), torch.rand(B, n), "out must be contiguous, got strides"),
        (torch.empty(T, B, 2 * n)[..., ::2], torch.rand(B, n), "out must be contiguous"),
        (torch.empty(T, B, n, dtype=torch.int32), torch.rand(B, n), "out must be a floating-point tensor, got torch.int32"),
        (torch.empty(T, B, n), torch.zeros(B, n, dtype=torch.uint8), "x must be a floating-point tensor, got torch.uint8"),
        (torch.empty(T, B, n), torch.rand(B, n, dtype=torch.complex64), "x must be a floating-point tensor"),
        (torch.empty(T, B, n), torch.rand(B, n, device="meta"), "x is on meta but out is on cpu"),
    ]  # fmt: skip


@pytest.mark.parametrize("shape", [BIG, SMALL], ids=["big", "small"])
def test_wrong_inputs_are_one_line_value_errors_and_nothing_is_drawn(generator, shape):
    for out, x, message in wrong_inputs(shape):
        out.fill_(7)
        state = torch.get_rng_state()
        with pytest.raises(ValueError) as info:
            mask_rng.masked_uniform_(out, x)
        text = str(info.value)
        assert text.startswith("masked_uniform_: ") and message in text and "\n" not in text, (message, text)
        assert torch.equal(torch.get_rng_state(), state)  # checked before the key or the seeds are drawn
        assert (out == 7).all()  # nothing written


def test_the_issue_12_case_snn_n_in_10_on_784_pixels_raises(generator):
    import models

    model = models.build("snn:n_in=10")  # T = 128: the masked input is (126, 1000, 10), big enough for the kernel
    with torch.no_grad(), pytest.raises(ValueError) as info:
        model(torch.rand(1000, 1, 28, 28) - 0.5)
    want = "x must be (B, n) = (1000, 10), the last two dims of out (126, 1000, 10); got (1000, 784)"
    assert want in str(info.value)


def reference(shape, x, seed):
    """u * x from the same generator, u drawn alone: what a valid masked draw must equal."""
    torch.manual_seed(seed)
    u = mask_rng.uniform_(torch.empty(shape))
    return u if x is None else u * x


@pytest.mark.parametrize("shape", [BIG, SMALL, (BIG[1], BIG[2])], ids=["big", "small", "no-leading-dims"])
def test_valid_calls_still_match_the_reference(generator, shape):
    B, n = shape[-2:]
    x = torch.rand(B, n) - 0.5
    for given in (x, x.t().contiguous().t(), x.double(), None):  # contiguous, transposed strides, float64, no x
        torch.manual_seed(11)
        got = mask_rng.masked_uniform_(torch.empty(shape), given)
        want = reference(shape, None if given is None else x, 11)
        assert torch.equal(got, want)  # u * x rounds once, in either order


def test_float64_out_still_draws_through_the_fallback():
    x = torch.rand(*BIG[1:], dtype=torch.float64) - 0.5
    torch.manual_seed(2)
    got = mask_rng.masked_uniform_(torch.empty(BIG, dtype=torch.float64), x)
    torch.manual_seed(2)
    want = mask_rng.uniform_(torch.empty(BIG, dtype=torch.float64)) * x
    assert torch.equal(got, want)


def native_or_skip():
    fn = mask_rng.native()
    if not fn:
        pytest.skip("no C compiler here: the native generator is unavailable")
    return fn


@pytest.mark.parametrize(
    "out, xs, message",
    [
        (torch.empty(6, 10), torch.rand(2, 784), "x (2, 784) must be (rows_x, n) with n = 10"),
        (torch.empty(6, 10), torch.rand(4, 10), "rows_x dividing the 6 rows of out (6, 10)"),
        (torch.empty(6, 10), torch.rand(10), "x (10,) must be (rows_x, n)"),
        (torch.empty(6, 10), torch.rand(0, 10), "x (0, 10) must be (rows_x, n)"),
        (torch.empty(()), torch.rand(1, 1), "with n = 0"),
        (torch.empty(6, 10, dtype=torch.float64), torch.rand(2, 10), "out must be float32 (out: or bfloat16 masks), contig"),
        (torch.empty(6, 10), torch.rand(2, 10, dtype=torch.float64), "x must be float32, contiguous, on the CPU"),
        (torch.empty(10, 6).t(), torch.rand(2, 6), "got torch.float32, strides (1, 6)"),
        (torch.empty(6, 10), torch.rand(10, 2).t(), "x must be float32, contiguous"),
    ],
)  # fmt: skip
def test_the_native_call_checks_what_its_pointers_assume(out, xs, message):
    fn = native_or_skip()
    with pytest.raises(ValueError, match="native mask kernel: ") as info:
        mask_rng._fill_native(fn, out, xs, key=1)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "n, rows, rows_x, start, stop",
    [(0, 6, 2, 0, 6), (10, 6, 0, 0, 6), (10, 6, 4, 0, 6), (10, 6, 2, -1, 6), (10, 6, 2, 4, 3), (10, 6, 2, 0, 7)],
    ids=["n=0", "rows_x=0", "rows_x-not-dividing", "start<0", "start>stop", "stop>rows"],
)
def test_the_c_kernel_refuses_row_counts_that_do_not_fit_and_writes_nothing(n, rows, rows_x, start, stop):
    fn = native_or_skip()
    out, x = torch.full((7, 10), -1.0), torch.ones(7, 10)  # one spare row: a write past `rows` would show
    assert fn(out.data_ptr(), x.data_ptr(), n, rows, rows_x, start, stop, 1, 0, 2) == -1
    assert (out == -1).all()
    assert fn(out.data_ptr(), x.data_ptr(), 10, 6, 2, 0, 6, 1, 3, 2) == -1  # no mode 3 (0 masks, 1 spikes, 2 bf16)
    assert (out == -1).all()
    assert fn(out.data_ptr(), x.data_ptr(), 10, 6, 2, 0, 6, 1, 0, 2) == 0  # the same buffers, counts that fit
    assert (out[:6] >= 0).all() and (out[:6] < 1).all() and (out[6] == -1).all()


def test_masks_written_in_bf16_are_the_float32_masks_rounded_as_torch_rounds_them():
    """Round to nearest, ties to even: with x = 1 about one number in 2^16 is a tie (598 of these 4.7 million)."""
    native_or_skip()
    x = torch.ones(1000, 784)
    x[0, :4] = torch.tensor([float("nan"), float("inf"), 1e-40, -0.0])
    x[1] = -x[1]
    x[2] = 3e38  # products past bfloat16's largest finite number round to inf, as the cast does
    single, half = torch.empty(6, 1000, 784), torch.empty(6, 1000, 784, dtype=torch.bfloat16)
    mask_rng.masked_uniform_rows_(single, x, 99, 2000)
    mask_rng.masked_uniform_rows_(half, x, 99, 2000)
    assert int(((single.view(torch.int32) & 0xFFFF) == 0x8000).sum()) > 100  # ties, rounded to even
    want = single.to(torch.bfloat16)
    assert torch.equal(want.isnan(), half.isnan())
    same = want.view(torch.int16) == half.view(torch.int16)
    assert same[~want.isnan()].all()
