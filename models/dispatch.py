"""Which code runs each kernel, C, Triton or torch, chosen in one place, with what was chosen and why.

A *kernel* is one operation with several implementations, its *backends*, in the order they are preferred: the neuron
recurrences of ``snn`` and ``lif`` (family ``neurons``: the C kernels on the CPU, Triton on CUDA, the torch loops) and
the random masks and rate spikes (family ``masks``: the C generator, torch generators on threads, torch). Each backend
comes from a *provider*, named in provenance as

    c+openmp       a C library of models/native.py, its work split over torch's own OpenMP threads
    c+pool         the same C code on a thread pool of its own (torch's parallel backend is not OpenMP, or the
                   -fopenmp build failed)
    triton         the Triton kernels (models/triton_neurons.py)
    torch-threads  torch generators, one per chunk, on threads (models/masks.py)
    torch          torch's own operations: the loops the tests take as the reference, torch.rand on a GPU

A call takes the first backend whose provider serves the tensors' device (C: the CPU; Triton: CUDA), is ready in this
process (built, installed, not switched off) and takes these arguments (float32, contiguous, no graph to record, ...);
the last, torch, takes everything. The choice is made once per call, for a whole sequence of time steps, never per
step. The modules that own a kernel's code register it (models/snn.py, models/lif.py, models/snn_chunked.py,
models/masks.py), and so can a model added later::

    dispatch.register("rnn.forward", "neurons", dispatch.SPEED,
                      dispatch.Backend(my_c_library, rnn_forward_c, rnn_forward_c_refusal),
                      dispatch.Backend(dispatch.TORCH, rnn_forward_torch))

``call`` runs a kernel, ``choose`` says what a call with these arguments runs and why, ``plan`` the same for float32
tensors that fit (the environment alone), ``provenance(device)`` what each family runs on a device and what a fallback
in effect changes (for run.json and the CSV rows), ``fallbacks(devices)`` the fallbacks in effect (bench.run's
warnings before it trains; ``SNNBENCH_REQUIRE_NATIVE=1`` makes them an error).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from models import native

# What running a later backend instead of the preferred one changes; the worst of a family's kernels counts.
SPEED = "speed"  # the same numbers, bit for bit
ROUNDING = "rounding"  # the same random numbers; float32 rounding differs (gradients; the event products' currents)
RESULTS = "results"  # other random numbers: other accuracies
CHANGES = {
    SPEED: "only the speed changes (the same numbers)",
    ROUNDING: "slower, and with the same random numbers the float32 rounding differs (of the gradients, and of the event "
    "products' currents), which a spiking network's thresholds amplify over a training: its numbers drift from a run with "
    "{preferred}, not only in their last digits",
    RESULTS: "the random numbers differ, so the accuracies differ from a run with {preferred}, not only the speed",
}
_SEVERITY = {"": 0, SPEED: 1, ROUNDING: 2, RESULTS: 3}
WORDS = {
    "c": "the C kernels", "c+openmp": "the C kernels on torch's OpenMP threads",
    "c+pool": "the C kernels on a thread pool of their own", "triton": "the Triton kernels",
    "torch-threads": "torch's generators on threads", "torch": "torch's own operations", "none": "nothing",
}  # fmt: skip
FAMILIES = {"neurons": "the neuron recurrences", "masks": "the random masks and rate spikes"}
REQUIRE = "SNNBENCH_REQUIRE_NATIVE"  # =1: a fallback in effect is an error (bench.run: exit status 2)


def _never() -> str | None:
    return None


@dataclass(frozen=True, eq=False)
class Provider:
    """Where a backend's code comes from: ``serves(device_type)``, whether it is meant for that device at all (C is no
    fallback on CUDA: it never runs there); ``unready()``, why it cannot run in this process (None: it can); its name
    in provenance; ``degraded()``, why it runs slower than it could (None: it does not)."""

    kind: str
    serves: Callable[[str], bool]
    unready: Callable[[], str | None] = _never
    label: Callable[[], str] | None = None
    degraded: Callable[[], str | None] = _never

    def name(self) -> str:
        return self.label() if self.label else self.kind


TORCH = Provider("torch", lambda device: True)
TORCH_THREADS = Provider("torch-threads", lambda device: device == "cpu")


def c_library(library: str, loader: Callable[[], object]) -> Provider:
    """The provider of C library ``library`` (models/native.py), which ``loader()`` returns (False where it cannot be
    built, ``native.failure(library)`` saying why)."""
    return Provider(
        "c", lambda device: device == "cpu",
        unready=lambda: None if loader() else native.failure(library) or f"the C library {library} is not loaded",
        label=lambda: "c+openmp" if native.threaded(library) else "c+pool",
        degraded=lambda: native.pooled(library),
    )  # fmt: skip


@dataclass(frozen=True)
class Backend:
    """``run(*args, **kwargs)`` computes the kernel; ``refusal(*args, **kwargs)`` says why it does not take these
    arguments (None: it takes them; no refusal: it takes everything its provider's device gives it)."""

    provider: Provider
    run: Callable[..., Any]
    refusal: Callable[..., str | None] | None = None


def backends(function: str, *modules: Any, torch_run: Callable[..., Any]) -> tuple[Backend, ...]:
    """The backends of ``function`` in each of ``modules`` (models/fused.py, models/triton_neurons.py: a module of
    kernels has a ``PROVIDER``, and for each kernel ``X`` its ``X`` and ``X_refusal``), in order, then ``torch_run``."""
    found = tuple(Backend(m.PROVIDER, getattr(m, function), getattr(m, f"{function}_refusal")) for m in modules)
    return (*found, Backend(TORCH, torch_run))


@dataclass(frozen=True)
class Kernel:
    name: str
    family: str
    changes: str  # what a later backend changes: SPEED, ROUNDING or RESULTS
    backends: tuple[Backend, ...]


@dataclass(frozen=True)
class Choice:
    """What runs kernel ``kernel`` (``backend``: "c+openmp", ..., "none" where nothing can), the backends passed over
    before it as (name, why not), and what that changes against the preferred one ("" when it runs)."""

    kernel: str
    backend: str
    skipped: tuple[tuple[str, str], ...] = ()
    changes: str = ""

    @property
    def reason(self) -> str:
        return "; ".join(dict.fromkeys(why for _, why in self.skipped))

    @property
    def preferred(self) -> str:
        return self.skipped[0][0] if self.skipped else self.backend


_KERNELS: dict[str, Kernel] = {}
_FIELDS: dict[str, Callable[[str], str]] = {}
_watched: set[str] | None = None


def register(name: str, family: str, changes: str, *backends: Backend, describe: str | None = None) -> Kernel:
    """Kernel ``name`` of ``family`` (a new family needs ``describe``: "the convolutions"), its backends in the order
    they are preferred, the last one taking everything. Registering a name again replaces it."""
    if changes not in CHANGES:
        raise ValueError(f"kernel {name}: changes must be one of {', '.join(CHANGES)}, got {changes!r}")
    if family not in FAMILIES:
        if not describe:
            raise ValueError(f"kernel {name}: family {family!r} is new; describe it (describe='the ...')")
        FAMILIES[family] = describe
    if not backends:
        raise ValueError(f"kernel {name}: no backend")
    _KERNELS[name] = kernel = Kernel(name, family, changes, tuple(backends))
    return kernel


def field(key: str, describe: Callable[[str], str]) -> None:
    """One more entry of ``provenance(device)``: ``describe(device)`` (models/masks.py: ``mask_generator``)."""
    _FIELDS[key] = describe


def kernels() -> dict[str, Kernel]:
    return dict(_KERNELS)


def call(name: str, *args, **kwargs):
    """Kernel ``name`` on these arguments (the first is a tensor on the device it runs on), by the first backend whose
    provider serves that device, is ready, and takes them."""
    kernel = _KERNELS[name]
    if _watched is not None:
        _watched.add(name)
    device = args[0].device.type
    for b in kernel.backends:
        p = b.provider
        if p.serves(device) and p.unready() is None and (b.refusal is None or b.refusal(*args, **kwargs) is None):
            return b.run(*args, **kwargs)
    raise RuntimeError(f"{name}: no backend takes these arguments ({choose(name, *args, **kwargs).reason})")


def choose(name: str, *args, **kwargs) -> Choice:
    """What ``call(name, *args, **kwargs)`` runs, and why not the backends before it."""
    return _pick(_KERNELS[name], args[0].device.type, lambda b: b.refusal(*args, **kwargs) if b.refusal else None)


def plan(name: str, device: str | torch.device = "cpu") -> Choice:
    """What runs kernel ``name`` on ``device`` for arguments every backend takes (float32, contiguous, large enough):
    the environment's choice (built, installed, switched off)."""
    return _pick(_KERNELS[name], torch.device(device).type, lambda b: None)


def ready(name: str, device: str | torch.device = "cpu") -> bool:
    """Whether some backend of kernel ``name`` can run on ``device`` here (a C-only kernel: its library is built)."""
    return plan(name, device).backend != "none"


def _pick(kernel: Kernel, device: str, refusal: Callable[[Backend], str | None]) -> Choice:
    skipped: list[tuple[str, str]] = []
    for b in kernel.backends:
        p = b.provider
        if not p.serves(device):
            continue  # not meant for this device: no fallback
        why = p.unready() or refusal(b)
        if why is not None:
            skipped.append((p.kind, why))
            continue
        if skipped:
            return Choice(kernel.name, p.name(), tuple(skipped), kernel.changes)
        if slower := p.degraded():  # c+pool where torch's OpenMP threads were meant
            return Choice(kernel.name, p.name(), (("c+openmp", slower),), SPEED)
        return Choice(kernel.name, p.name())
    return Choice(kernel.name, "none", tuple(skipped))


@contextmanager
def watching() -> Iterator[set[str]]:
    """The names of the kernels called inside the block (bench/preflight.py: which ones a run's models use)."""
    global _watched
    outer, _watched = _watched, set()
    seen = _watched
    try:
        yield seen
    finally:
        _watched = outer
        if outer is not None:
            outer |= seen


@dataclass(frozen=True)
class Family:
    """What family ``family`` runs on a device: ``backend`` (its kernels' backends: "c+openmp", or "triton (torch:
    lif.backward)" where they differ), the fallback in effect (``preferred``: what would run without it, ``reason``)
    and what it changes (``changes``, "" when none is in effect)."""

    device: str
    family: str
    backend: str
    preferred: str = ""
    reason: str = ""
    changes: str = ""

    def summary(self) -> str:
        """The fallback: what runs instead of what, and why."""
        runs = WORDS.get(self.backend.split(" ")[0], self.backend)
        preferred = WORDS.get(self.preferred, self.preferred)
        return f"on {self.device}, {FAMILIES[self.family]} are computed by {runs}, not {preferred} ({self.reason})"

    def line(self) -> str:
        """The fallback in one line, and what it changes: bench.run's warning."""
        return f"{self.summary()}: {CHANGES[self.changes].format(preferred=WORDS.get(self.preferred, self.preferred))}"


def family(name: str, device: str | torch.device, only: Iterable[str] | None = None) -> Family | None:
    """What family ``name`` runs on ``device`` (its kernels in ``only``, if given); None where none of them can run."""
    device = torch.device(device).type
    only = None if only is None else set(only)
    plans = [plan(k.name, device) for k in _KERNELS.values() if k.family == name and (only is None or k.name in only)]
    plans = [p for p in plans if p.backend != "none"]  # a C-only kernel without its library: its caller takes another path
    if not plans:
        return None
    main = Counter(p.backend for p in plans).most_common(1)[0][0]
    others = {p.kernel: p.backend for p in plans if p.backend != main}
    backend = main + (f" ({'; '.join(f'{b}: {k}' for k, b in others.items())})" if others else "")
    fallen = [p for p in plans if p.changes]
    if not fallen:
        return Family(device, name, backend)
    worst = max(fallen, key=lambda p: _SEVERITY[p.changes])
    reason = "; ".join(dict.fromkeys(p.reason for p in fallen))
    return Family(device, name, backend, worst.preferred, reason, worst.changes)


def provenance(device: str | torch.device) -> dict[str, str]:
    """For ``device``, per kernel family: ``<family>`` its backend, ``<family>_fallback`` why not the preferred one and
    ``<family>_changes`` what that changes (SPEED, ROUNDING, RESULTS; both "" where the preferred one runs); and the
    registered fields (``mask_generator``). Every key is always there, a family that cannot run there is "none"."""
    out: dict[str, str] = {}
    for name in FAMILIES:
        if not any(k.family == name for k in _KERNELS.values()):
            continue
        f = family(name, device) or Family(torch.device(device).type, name, "none")
        out.update({name: f.backend, f"{name}_fallback": f.reason, f"{name}_changes": f.changes})
    for key, describe in _FIELDS.items():
        out[key] = describe(str(device))
    return out


def fallbacks(devices: Iterable[str | torch.device], only: Iterable[str] | None = None) -> list[Family]:
    """The fallbacks in effect on ``devices`` (each device type once) for the kernels in ``only`` (None: all)."""
    found = []
    for device in dict.fromkeys(torch.device(d).type for d in devices):
        for name in FAMILIES:
            f = family(name, device, only)
            if f is not None and f.changes:
                found.append(f)
    return found


def required() -> bool:
    """Whether ``SNNBENCH_REQUIRE_NATIVE=1``: a fallback in effect is an error, not a warning."""
    return os.environ.get(REQUIRE, "0") not in ("", "0")


def tensor_refusal(tensors: Iterable[torch.Tensor | None], devices: tuple[str, ...], dtypes: tuple[torch.dtype, ...],
                   contiguous: bool = True) -> str | None:  # fmt: skip
    """Why a kernel that reads raw memory cannot take these tensors (None: it can): a device or dtype it does not take,
    strides other than contiguous ones, or a graph to record (only torch's operations record one)."""
    for t in tensors:
        if t is None:
            continue
        if t.device.type not in devices:
            return f"a tensor on {t.device}"
        if t.dtype not in dtypes:
            return str(t.dtype).removeprefix("torch.")
        if contiguous and not t.is_contiguous():
            return "not contiguous"
        if t.requires_grad and torch.is_grad_enabled():
            return "a graph to record"
    return None
