"""Event-driven layer products for 0/1 inputs on the CPU: a spike costs an addition, a silent input nothing.

A layer fed by 0/1 spikes x (rows, n) computes x W^T + b as, per row, the sum of the weight columns of its active
inputs, and its weight gradient as the output gradient's rows scattered into the columns of the inputs that fired
(models/_events.c, C with OpenMP through models/native.py). Under ``rate`` encoding the spikes are drawn straight
as events by the generator of models/_masks.c (the same numbers, so the same spikes as the dense path, bit for bit),
only where an input's probability is above 0: no dense (T, B, n) matrix is written or read. The results equal the
dense GEMMs' to float32 summation order (tests/test_spike_products.py).

Which one runs is decided per call from the input's density (under ``rate`` the mean probability, the expected
fraction of 1s; for a layer fed by spikes their measured fraction) against the **crossover** density above which the
dense path is quicker, measured on this machine (``crossover``: both paths timed with what each must do besides the
products, drawing the rate spikes or reading the events out of the spikes; once per CPU model, thread count, shape
and kind, then kept in ``$XDG_CACHE_HOME/snnbench/crossover.json``). ``SNNBENCH_EVENTS`` overrides it: ``0`` never
event-driven, ``1`` always (where the kernels take the call), a number in (0, 1) a crossover of one's own. The
dispatcher records the choice (models/dispatch.py, kernels ``products.rate`` and ``products.spikes``), ``counts()``
how many calls took each path, and provenance names the rule and the crossovers measured (``event_products``).
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from models import dispatch
from models import masks as mask_rng
from models import native as _build

SOURCE = Path(__file__).with_name("_events.c")
FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-shared", "-fPIC")
ENV = "SNNBENCH_EVENTS"
DENSITIES = (0.01, 0.03, 0.1, 0.2, 0.3, 0.45, 0.6, 0.8)  # where the crossover is looked for
CALIBRATION_ROWS = 8192
FORMAT = 4  # of the crossover cache: a change of the kernels or the measurement makes every entry stale

_lock = threading.Lock()
_native: object = None
_crossovers: dict[tuple[int, int, int, float, str], float] = {}
_counts: Counter = Counter()


class _Kernels:
    def __init__(self, lib: ctypes.CDLL):
        p, i64, u64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_uint64, ctypes.c_int
        self.rate_events = lib.rate_events
        self.rate_events.argtypes = [p, p, p, i64, i64, i64, u64, p, p, p, i32]
        self.rate_support = lib.rate_support
        self.rate_support.argtypes = [p, i64, i64, p, p, i32]
        self.dense_events = lib.dense_events
        self.dense_events.argtypes = [p, i64, i64, p, p, p, i32]
        self.forward = lib.events_forward
        self.forward.argtypes = [p, p, p, p, p, p, i64, i64, i64, i32]
        self.weight_grad = lib.events_weight_grad
        self.weight_grad.argtypes = [p, p, p, p, p, i64, i64, i64, i32]
        for fn in (self.rate_events, self.rate_support, self.dense_events, self.forward, self.weight_grad):
            fn.restype = ctypes.c_int


def native():
    """The compiled kernels, or False where they cannot be built (or ``SNNBENCH_NATIVE=0``)."""
    global _native
    with _lock:
        if _native is None:
            _native = _build.load(SOURCE, "events", FLAGS, _Kernels)
        return _native


PROVIDER = dispatch.c_library("events", lambda: native())


def _parts() -> int:
    return torch.get_num_threads() if _build.threaded("events") else 1


def _ok(code: int, what: str) -> None:
    if code:
        raise ValueError(f"{what}: the C kernel refused its counts")


def _float32(name: str, t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    if t.dtype != torch.float32 or t.device.type != "cpu" or tuple(t.shape) != tuple(shape):
        raise ValueError(f"event products: {name} must be float32 {tuple(shape)} on the CPU, got {t.dtype} "
                         f"{tuple(t.shape)} on {t.device}")  # fmt: skip
    return t.detach().contiguous()


@dataclass(frozen=True)
class Events:
    """A (rows, n) 0/1 matrix as the indices of its 1s: row r's ascending at ``idx[start[r] : start[r] + count[r]]``."""

    idx: torch.Tensor  # int32
    start: torch.Tensor  # int64 (rows,)
    count: torch.Tensor  # int32 (rows,)
    n: int

    @property
    def rows(self) -> int:
        return len(self.start)

    def dense(self) -> torch.Tensor:
        """The (rows, n) float32 0/1 matrix (for the tests: a row at a time)."""
        out = torch.zeros(self.rows, self.n)
        for r, (s, c) in enumerate(zip(self.start.tolist(), self.count.tolist())):
            out[r, self.idx[s : s + c].long()] = 1.0
        return out

    def total(self) -> int:
        return int(self.count.sum())


def rate_events(p: torch.Tensor, steps: int, key: int) -> Events:
    """The spikes of ``rate`` encoding for probabilities ``p`` (B, n) at ``steps`` steps, row t B + b of step t and
    image b, as events: those models/_masks.c writes for ``key`` (``masks.bernoulli_`` with that key), bit for bit."""
    B, n = p.shape
    p = _float32("p", p, (B, n))
    first = torch.empty(B + 1, dtype=torch.int64)
    nz = torch.empty(max(1, B * n), dtype=torch.int32)  # image by image, the inputs that can fire, ascending
    fns = native()
    _ok(fns.rate_support(p.data_ptr(), n, B, first.data_ptr(), nz.data_ptr(), _parts()), "rate_support")
    S, rows = int(first[-1]), steps * B
    idx = torch.empty(max(1, steps * S), dtype=torch.int32)
    start = torch.empty(rows, dtype=torch.int64)
    count = torch.empty(rows, dtype=torch.int32)
    _ok(fns.rate_events(p.data_ptr(), nz.data_ptr(), first.data_ptr(), n, B, rows, key, idx.data_ptr(), start.data_ptr(),
           count.data_ptr(), _parts()), "rate_events")  # fmt: skip
    return Events(idx, start, count, n)


def dense_events(x: torch.Tensor) -> Events:
    """The events of a dense matrix ``x`` (rows, n), float32: an event wherever an entry is not 0."""
    rows, n = x.shape
    x = _float32("x", x, (rows, n))
    idx = torch.empty(max(1, rows * n), dtype=torch.int32)
    start = torch.empty(rows, dtype=torch.int64)
    count = torch.empty(rows, dtype=torch.int32)
    _ok(native().dense_events(x.data_ptr(), n, rows, idx.data_ptr(), start.data_ptr(), count.data_ptr(), _parts()),
        "dense_events")  # fmt: skip
    return Events(idx, start, count, n)


def forward(ev: Events, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """(rows, N) = events @ weight^T + bias, weight (N, n): each row the sum of its events' weight columns."""
    N = weight.shape[0]
    P = -(-N // 16) * 16  # the kernels' rows: whole vectors of 16, the padding 0
    wt = weight.new_zeros(ev.n, P)
    wt[:, :N] = _float32("weight", weight, (N, ev.n)).t()  # (n, P): an event's weights one row
    b = None
    if bias is not None:
        b = bias.new_zeros(P)
        b[:N] = _float32("bias", bias, (N,))
    out = torch.empty(ev.rows, N)
    _ok(native().forward(ev.idx.data_ptr(), ev.start.data_ptr(), ev.count.data_ptr(), wt.data_ptr(),
                         None if b is None else b.data_ptr(), out.data_ptr(), ev.n, N, ev.rows, _parts()), "forward")  # fmt: skip
    return out


def weight_grad(ev: Events, grad: torch.Tensor) -> torch.Tensor:
    """dL/dweight (N, n) = grad^T @ events, grad (rows, N): each input's column the sum of the rows where it fired."""
    N = grad.shape[1]
    g = _float32("grad", grad, (ev.rows, N))
    dwt = torch.empty(ev.n, -(-N // 16) * 16)  # (n, P), as forward's weights
    _ok(native().weight_grad(ev.idx.data_ptr(), ev.start.data_ptr(), ev.count.data_ptr(), g.data_ptr(), dwt.data_ptr(),
                             ev.n, N, ev.rows, _parts()), "weight_grad")  # fmt: skip
    return dwt[:, :N].t()


class EventLinear(torch.autograd.Function):
    """``F.linear`` of a 0/1 input given as events, (rows, N), differentiable in the weight and the bias, and in
    ``x``, the same input as a dense (rows, n) tensor, where one is given (a layer fed by spiking neurons: dL/dx =
    dL/dout @ weight, a GEMM; its values are not read); spikes drawn from data have none."""

    @staticmethod
    def forward(ctx, weight, bias, ev: Events, x=None):
        ctx.ev = ev
        ctx.has_bias = bias is not None
        ctx.save_for_backward(weight if x is not None else None)
        return forward(ev, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        (weight,) = ctx.saved_tensors
        gw = weight_grad(ctx.ev, grad) if ctx.needs_input_grad[0] else None
        gb = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[1] else None
        gx = grad @ weight if len(ctx.needs_input_grad) > 3 and ctx.needs_input_grad[3] else None
        return gw, gb, None, gx


# ---- the crossover


def _cache_file() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "snnbench" / "crossover.json"


def _cache_prefix(threads: int) -> str:
    """The cache's keys of this CPU at ``threads`` threads begin so."""
    return f"{FORMAT}|{_build.cpu_model()}|threads={threads}|"


def _cache_key(n: int, N: int, threads: int) -> str:
    return f"{_cache_prefix(threads)}{n}x{N}"


def _read_cache() -> dict:
    try:
        return json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}


def _best(fn, repeats: int = 3) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def measure(n: int, N: int, densities=DENSITIES, rows: int = CALIBRATION_ROWS, repeats: int = 3, seed: int = 0,
            rate: bool = False, active: float = 1.0, extract: bool = False) -> list[dict]:  # fmt: skip
    """Per density: the seconds of an n -> N layer's forward and weight gradient on ``rows`` rows of 0/1 input, dense
    (two GEMMs) and event-driven, best of ``repeats``; float32, this process's threads. ``rate``: the spikes drawn
    too, by ``masks.bernoulli_`` for the dense path and ``rate_events`` for the other, from probabilities that are 0
    but for a share ``active`` of the inputs (a digit's background never fires, and the event generator skips it;
    1: no input to skip, its worst case); ``extract``: the events read from the dense 0/1 matrix too (``dense_events``:
    a layer fed by spiking neurons); else the products alone. Densities above ``active`` are left out."""
    g = torch.Generator().manual_seed(seed)
    weight = torch.empty(N, n).uniform_(-0.1, 0.1, generator=g)
    steps = 8
    B = -(-rows // steps)
    rows = steps * B
    grad = torch.randn(rows, N, generator=g)
    out, gw = torch.empty(rows, N), torch.empty(N, n)
    spikes = torch.empty(steps, B, n) if rate else None
    table = []
    for d in (d for d in densities if d <= active):
        p = (torch.rand(B, n, generator=g) < active) * float(d / active) if active < 1 else torch.full((B, n), float(d))
        x = None if rate else (torch.rand(rows, n, generator=g) < d).float()  # (rate: the spikes are drawn each time)
        ev = None if rate else dense_events(x)

        def dense(x=x, p=p):
            if rate:
                x = mask_rng.bernoulli_(spikes, p).view(rows, n)
            torch.mm(x, weight.t(), out=out)
            torch.mm(grad.t(), x, out=gw)

        def events(ev=ev, p=p, x=x):
            if rate:
                ev = rate_events(p, steps, 12345)
            elif extract:
                ev = dense_events(x)
            forward(ev, weight, None)
            weight_grad(ev, grad)

        table.append({"density": d, "dense_seconds": _best(dense, repeats), "event_seconds": _best(events, repeats)})
    return table


def crossing(table: list[dict]) -> float:
    """The density where event-driven stops being quicker (linear between the measured densities): 0 where it never is,
    1 where it always is."""
    ratio = [(r["density"], r["event_seconds"] / r["dense_seconds"]) for r in table]
    if ratio[0][1] >= 1:
        return 0.0
    for (d0, r0), (d1, r1) in zip(ratio, ratio[1:]):
        if r1 >= 1:
            return round(d0 + (1 - r0) * (d1 - d0) / (r1 - r0), 3)
    return 1.0


_override: list[float] = []  # ``forcing``'s, innermost last


@contextmanager
def forcing(value: float):
    """Inside the block, ``value`` is the crossover whatever ``SNNBENCH_EVENTS`` says (0: dense; bench.speed's row of
    lif with dense products)."""
    _override.append(value)
    try:
        yield
    finally:
        _override.pop()


def forced() -> float | None:
    """``forcing``'s crossover, else ``SNNBENCH_EVENTS``'s (None: unset, measure it); ValueError for anything but a
    number in [0, 1]."""
    if _override:
        return _override[-1]
    text = os.environ.get(ENV, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:
        raise ValueError(f"{ENV} must be 0 (never event-driven), 1 (always) or a crossover density in between, got {text!r}")
    return value


def active_share(p: torch.Tensor) -> float:
    """The share of the inputs whose probability is above 0, rounded up to a twentieth (the crossover's key)."""
    return min(1.0, math.ceil(float((p > 0).float().mean()) * 20 - 1e-9) / 20) or 0.05


def crossover(n: int, N: int, active: float = 1.0, kind: str = "rate") -> float:
    """The density below which an n -> N layer trains quicker event-driven here: under ``rate`` encoding (``kind``
    "rate": its spikes drawn and its products, ``measure(rate=True)``, for inputs of which a share ``active`` can fire,
    ``active_share``), or fed by spiking neurons ("spikes": the events read from the dense spikes and the products,
    ``measure(extract=True)``). ``SNNBENCH_EVENTS``'s number, else measured once per CPU model, thread count, shape,
    kind and share, and kept."""
    value = forced()
    if value is not None:
        return value
    threads = torch.get_num_threads()
    key = (n, N, threads, active, kind)
    if key in _crossovers:
        return _crossovers[key]
    name = _cache_key(n, N, threads) + (f"|active={active:g}" if kind == "rate" else "|from spikes")
    cached = _read_cache().get(name)
    if cached is None:
        table = measure(n, N, rate=True, active=active) if kind == "rate" else measure(n, N, extract=True)
        cached = {"crossover": crossing(table), "table": table, "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        with _lock:
            data = _read_cache()
            data[name] = cached
            path = _cache_file()
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data, indent=1))
            os.replace(tmp, path)
    _crossovers[key] = float(cached["crossover"])
    return _crossovers[key]


def describe(device: str) -> str:
    """Provenance: the rule, and the crossovers known for this CPU and thread count."""
    if torch.device(device).type != "cpu":
        return "dense (event-driven products are CPU-only)"
    if not native():
        return f"dense ({_build.failure('events') or 'the C kernels are not built'})"
    if (value := forced()) is not None:
        return f"event-driven below density {value:g} ({ENV})"
    threads = torch.get_num_threads()
    prefix = _cache_prefix(threads)
    known = {k.removeprefix(prefix): v["crossover"] for k, v in _read_cache().items() if k.startswith(prefix)}
    shapes = ", ".join(f"{shape.replace('|active=', ' rate-coded, a share ').replace('|', ' ')}: below {d:g}"
                       for shape, d in sorted(known.items())) or "none measured yet"  # fmt: skip
    return f"event-driven below the density measured as the crossover on this CPU at {threads} threads ({shapes})"


def counts() -> dict[str, int]:
    """How many calls took each path since the last ``reset_counts``: under ``rate`` "events" and "dense", fed by spikes
    "spikes events" and "spikes dense"."""
    return dict(_counts)


def reset_counts() -> None:
    _counts.clear()


# ---- the kernel products.rate: layer 1 under rate encoding


def rate_linear(p: torch.Tensor, steps: int, weight: torch.Tensor, bias: torch.Tensor | None, owner: object) -> torch.Tensor:
    """Layer 1's current (steps, B, N) under ``rate`` encoding of probabilities ``p`` (B, n): event-driven or dense
    (the spikes drawn into ``owner``'s workspace, then one GEMM), as the dispatcher chooses; the same spikes either way."""
    return dispatch.call("products.rate", p, steps, weight, bias, owner)


def _not_float32(dtype: torch.dtype) -> str | None:
    if dtype != torch.float32 or torch.is_autocast_enabled("cpu"):
        return "not float32 (the event-driven products are float32 only)"
    return None


def _not_below(x: torch.Tensor, limit: float) -> str | None:
    """Why the density of x (its mean: 1s, or probabilities) leaves the event-driven path (None: it does not)."""
    density = float(x.detach().mean())
    if density >= limit and limit < 1:  # (a crossover of 1: event-driven at every density)
        return f"density {density:.3f}, not below the crossover {limit:g}"
    return None


def _rate_refusal(p, steps, weight, bias, owner) -> str | None:
    why = dispatch.tensor_refusal((p,), ("cpu",), (torch.float32,), contiguous=False) or _not_float32(weight.dtype)
    if why:
        return why
    if steps * p.numel() < mask_rng.MIN_PARALLEL or not mask_rng.native():
        return "spikes the C generator would not draw"  # others draw other numbers: the same spikes or none
    if p.dim() != 2:
        return "not (B, n) probabilities"
    return _not_below(p, crossover(p.shape[1], weight.shape[0], active_share(p)))


def _rate_events(p, steps, weight, bias, owner) -> torch.Tensor:
    ev = rate_events(p.detach(), steps, mask_rng.draw_key())
    _counts["events"] += 1
    return EventLinear.apply(weight, bias, ev).view(steps, *p.shape[:-1], weight.shape[0])


def _rate_dense(p, steps, weight, bias, owner) -> torch.Tensor:
    _counts["dense"] += 1
    inputs = mask_rng.bernoulli_(mask_rng.workspace(owner, (steps, *p.shape), p), p)
    return F.linear(inputs, weight, bias)


dispatch.register("products.rate", "products", dispatch.ROUNDING, dispatch.Backend(PROVIDER, _rate_events, _rate_refusal),
                  dispatch.Backend(dispatch.TORCH, _rate_dense), describe="the layer products on 0/1 inputs")  # fmt: skip
dispatch.field("event_products", describe)


# ---- the kernel products.spikes: a layer fed by spiking neurons

MIN_EVENTS = 1 << 16  # entries of the input below which the dense GEMM is taken without asking: no work to save


def spike_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for x (..., n) of 0/1 spikes (a spiking layer's output, with its gradient):
    event-driven or dense, as the dispatcher chooses from x's density."""
    return dispatch.call("products.spikes", x, weight, bias)


def _spikes_refusal(x, weight, bias) -> str | None:
    return _spikes_why(x, weight.shape[0], weight.dtype)


def _spikes_why(x: torch.Tensor, N: int, dtype: torch.dtype) -> str | None:
    """Why an n -> N layer fed by the spikes x does not run event-driven (None: it does)."""
    why = dispatch.tensor_refusal((x,), ("cpu",), (torch.float32,), contiguous=False)
    if why and why != "a graph to record":  # (the Function here records its own)
        return why
    if why := _not_float32(dtype):
        return why
    if x.numel() < MIN_EVENTS:
        return f"{x.numel()} inputs, below MIN_EVENTS"
    return _not_below(x, crossover(x.shape[-1], N, kind="spikes"))


def _spikes_events(x, weight, bias) -> torch.Tensor:
    flat = x.reshape(-1, x.shape[-1])
    _counts["spikes events"] += 1
    out = EventLinear.apply(weight, bias, dense_events(flat.detach()), flat)
    return out.view(*x.shape[:-1], weight.shape[0])


def _spikes_dense(x, weight, bias) -> torch.Tensor:
    _counts["spikes dense"] += 1
    return F.linear(x, weight, bias)


dispatch.register("products.spikes", "products", dispatch.ROUNDING, dispatch.Backend(PROVIDER, _spikes_events, _spikes_refusal),
                  dispatch.Backend(dispatch.TORCH, _spikes_dense))  # fmt: skip


def spike_weight_grad(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """grad^T @ x, (N, n), for x (rows, n) of 0/1 spikes and grad (rows, N): the weight gradient of a layer fed by
    spikes, event-driven where the C kernels take it and x's density is below the crossover (``products.spikes``'s),
    else one GEMM (``rsnn``'s recurrent weights: all steps' spikes at once)."""
    if native() and _spikes_why(x, grad.shape[1], grad.dtype) is None:
        _counts["spikes events"] += 1
        return weight_grad(dense_events(x), grad)
    _counts["spikes dense"] += 1
    return torch.mm(grad.t(), x)
