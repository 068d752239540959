"""models/dispatch.py: one place chooses the backend of every kernel (C, Triton, torch), says what it chose and why, and
what a fallback changes; bench.run says so before it trains (bench/preflight.py's native_notes), or refuses under
SNNBENCH_REQUIRE_NATIVE=1. A compiler that fails is tried in a child process with a cache of its own, so that the
cached build is not used."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import models
from bench.cli import UsageError
from models import dispatch, fused, masks, native, snn, spike_products, triton_neurons

ROOT = Path(__file__).resolve().parent.parent
NEURONS = ("snn.forward", "snn.backward", "lif.forward", "lif.backward", "snn.steps", "snn.steps_backward")
KEYS = {"neurons", "neurons_fallback", "neurons_changes", "masks", "masks_fallback", "masks_changes", "mask_generator"}
KEYS |= {"recurrent", "recurrent_fallback", "recurrent_changes"}  # rsnn's kernels (models/rsnn.py): torch's alone so far
KEYS |= {"products", "products_fallback", "products_changes", "event_products"}  # models/spike_products.py
SNN_ARGS = (0.9, 1.0, 0.5, False, "both")


@pytest.fixture
def built():
    if not (fused.native() and masks.native() and spike_products.native()):
        pytest.skip("no C compiler here (or SNNBENCH_NATIVE=0): the C kernels are unavailable")


def c_label(library: str) -> str:
    return "c+openmp" if native.threaded(library) else "c+pool"


def child(code: str, tmp_path: Path, **env) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter with a cache of its own (no cached build) and ``env`` added."""
    full = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, cwd=tmp_path, timeout=600)


PROVENANCE = "import json, models; from models import dispatch; print(json.dumps(dispatch.provenance('cpu')))"


# ---- the choice and its reasons ----


def test_the_registered_kernels_and_their_families():
    registered = dispatch.kernels()
    assert {n: registered[n].family for n in NEURONS} == dict.fromkeys(NEURONS, "neurons")
    assert {k.name for k in registered.values() if k.family == "masks"} == {"masks.uniform", "masks.spikes", "masks.rows"}
    changes = {n: k.changes for n, k in registered.items()}
    assert changes["snn.forward"] == changes["lif.forward"] == dispatch.SPEED  # the same bits by every backend
    assert changes["snn.backward"] == changes["lif.backward"] == dispatch.ROUNDING
    assert changes["masks.uniform"] == changes["masks.spikes"] == dispatch.RESULTS  # other generators, other numbers


def test_a_call_takes_the_first_backend_that_takes_its_arguments_and_says_why_not_the_others(built):
    c = torch.rand(4, 3, 20)
    assert dispatch.choose("snn.forward", c, *SNN_ARGS).backend == c_label("neurons")
    cases = [
        (c.double(), "float64"),
        (c.transpose(1, 2), "not contiguous"),
        (c.clone().requires_grad_(), "a graph to record"),
        (c[0], "not a (T, B, N) sequence"),
    ]
    for tensor, why in cases:
        choice = dispatch.choose("snn.forward", tensor, *SNN_ARGS)
        assert (choice.backend, choice.reason, choice.skipped[0][0], choice.changes) == ("torch", why, "c", dispatch.SPEED)
    with torch.no_grad():  # no graph to record: the C kernel takes it
        assert dispatch.choose("snn.forward", c.clone().requires_grad_(), *SNN_ARGS).backend == c_label("neurons")
    meta = dispatch.choose("snn.forward", c.to("meta"), *SNN_ARGS)
    assert meta == dispatch.Choice("snn.forward", "torch")  # C serves the CPU only: on meta torch is no fallback
    small, big = torch.empty(3, 4, 5), torch.empty(2, 1000, 600)
    assert dispatch.choose("masks.uniform", big).backend == c_label("masks")
    assert dispatch.choose("masks.uniform", big.double()).backend == "torch-threads"
    assert dispatch.choose("masks.uniform", big.double()).reason == "float64"
    assert dispatch.choose("masks.uniform", small).reason == "60 numbers, below MIN_PARALLEL"


def test_the_dispatched_call_gives_the_bits_of_the_backend_it_chose(built, monkeypatch):
    c = torch.randn(6, 5, 70) * 2
    torch_loop = snn.simulate_torch(c, *SNN_ARGS)
    for got in (dispatch.call("snn.forward", c, *SNN_ARGS), fused.snn_forward(c, *SNN_ARGS)):
        assert all(torch.equal(g, w) for g, w in zip(got, torch_loop))
    monkeypatch.setattr(fused, "_native", False)  # as without a compiler
    monkeypatch.setattr(native, "_failures", {})
    choice = dispatch.choose("snn.forward", c, *SNN_ARGS)
    assert choice.backend == "torch" and choice.reason == "the C library neurons is not loaded"
    assert all(torch.equal(g, w) for g, w in zip(dispatch.call("snn.forward", c, *SNN_ARGS), torch_loop))
    assert not dispatch.ready("snn.steps", "cpu") and dispatch.plan("snn.steps").backend == "none"


def test_the_models_call_their_kernels_through_the_dispatcher():
    x, y = torch.rand(4, 784) - 0.5, torch.arange(4)
    for spec, want in [
        ("snn:time_steps=6", {"masks.uniform", "snn.forward", "snn.backward"}),
        (
            "lif:time_steps=4",
            {"products.rate", "products.spikes", "masks.spikes", "masks.uniform", "lif.forward", "lif.backward"},
        ),
        ("lif:time_steps=4,encoding=direct", {"products.spikes", "lif.forward", "lif.backward"}),  # no random draws
        ("ffn", set()),
    ]:
        model = models.build(spec)
        with dispatch.watching() as used:
            torch.nn.functional.cross_entropy(model(x), y).backward()
            model.activity(x)
        assert used == want, spec


def test_watching_nests():
    with dispatch.watching() as outer:
        masks.uniform_(torch.empty(3))
        with dispatch.watching() as inner:
            snn.simulate(torch.rand(2, 1, 3), *SNN_ARGS)
    assert inner == {"snn.forward"} and outer == {"masks.uniform", "snn.forward"}


# ---- what runs on a device, and what a fallback changes ----


def test_provenance_on_this_machine(built):
    got = dispatch.provenance("cpu")
    assert set(got) == KEYS
    assert got == {"neurons": c_label("neurons"), "masks": c_label("masks"), "mask_generator": masks.generator_name("cpu"),
                   "neurons_fallback": native.pooled("neurons") or "", "masks_fallback": native.pooled("masks") or "",
                   "neurons_changes": "speed" if native.pooled("neurons") else "",
                   "masks_changes": "speed" if native.pooled("masks") else "",
                   "recurrent": "torch", "recurrent_fallback": "", "recurrent_changes": "",
                   "products": c_label("events"), "products_fallback": native.pooled("events") or "",
                   "products_changes": "speed" if native.pooled("events") else "",
                   "event_products": spike_products.describe("cpu")}  # fmt: skip
    assert masks.generator_name("cpu") == "native splitmix64 (models/_masks.c)"  # bench/record.py records it


def test_on_cuda_triton_runs_the_neurons_and_torch_the_masks_or_says_why_not(monkeypatch):
    monkeypatch.setattr(triton_neurons, "triton", object())  # installed, as on a GPU machine
    got = dispatch.provenance("cuda")
    assert got["neurons"] == "triton (torch: lif.backward)" and got["neurons_fallback"] == ""  # lif's backward: by design
    assert (got["masks"], got["masks_fallback"], got["mask_generator"]) == ("torch", "", "torch.rand on the device")
    monkeypatch.setenv(triton_neurons.DISABLE, "0")
    off = dispatch.provenance("cuda:1")
    assert (off["neurons"], off["neurons_fallback"], off["neurons_changes"]) == ("torch", "SNNBENCH_TRITON=0", "rounding")
    monkeypatch.delenv(triton_neurons.DISABLE)
    monkeypatch.setattr(triton_neurons, "triton", None)
    assert dispatch.plan("snn.forward", "cuda").reason == "triton not installed"
    (fallback,) = dispatch.fallbacks(["cuda:0", "cuda:1"], only=["snn.forward"])  # once for both GPUs
    assert (fallback.device, fallback.family, fallback.backend, fallback.changes) == ("cuda", "neurons", "torch", "speed")


def test_the_worst_change_of_a_family_counts(monkeypatch):
    monkeypatch.setattr(fused, "_native", False)
    monkeypatch.setattr(masks, "_native", False)
    monkeypatch.setattr(native, "_failures", {})
    lines = {f.family: f for f in dispatch.fallbacks(["cpu"])}
    assert lines["neurons"].changes == "rounding" and lines["masks"].changes == "results"
    assert {f.family: f.changes for f in dispatch.fallbacks(["cpu"], only=["snn.forward"])} == {"neurons": "speed"}
    assert dispatch.fallbacks(["cpu"], only=[]) == []
    assert "the accuracies differ from a run with the C kernels, not only the speed" in lines["masks"].line()
    assert lines["masks"].line().startswith("on cpu, the random masks and rate spikes are computed by torch's generators on "
                                            "threads, not the C kernels (the C library masks is not loaded): ")  # fmt: skip


def test_a_model_added_later_registers_its_kernels(monkeypatch):
    monkeypatch.setattr(dispatch, "_KERNELS", dict(dispatch._KERNELS))
    monkeypatch.setattr(dispatch, "FAMILIES", dict(dispatch.FAMILIES))
    with pytest.raises(ValueError, match="family 'conv' is new; describe it"):
        dispatch.register("conv.forward", "conv", dispatch.SPEED, dispatch.Backend(dispatch.TORCH, torch.neg))
    with pytest.raises(ValueError, match="changes must be one of speed, rounding, results"):
        dispatch.register("conv.forward", "neurons", "faster", dispatch.Backend(dispatch.TORCH, torch.neg))
    missing = dispatch.Provider("c", lambda device: device == "cpu", unready=lambda: "no C compiler: cc not found")
    dispatch.register("conv.forward", "conv", dispatch.RESULTS, dispatch.Backend(missing, torch.abs),
                      dispatch.Backend(dispatch.TORCH, torch.neg), describe="the convolutions")  # fmt: skip
    x = torch.tensor([-1.0, 2.0])
    assert torch.equal(dispatch.call("conv.forward", x), -x)
    assert dispatch.choose("conv.forward", x).reason == "no C compiler: cc not found"
    got = dispatch.provenance("cpu")
    assert (got["conv"], got["conv_fallback"], got["conv_changes"]) == ("torch", "no C compiler: cc not found", "results")
    (line,) = [f.line() for f in dispatch.fallbacks(["cpu"], only=["conv.forward"])]
    assert line.startswith("on cpu, the convolutions are computed by torch's own operations, not the C kernels (no C")


def test_the_c_pool_after_a_failed_openmp_build_is_a_fallback_of_speed(monkeypatch, tmp_path):
    """Where torch runs on OpenMP but the -fopenmp build fails, the plain build runs on a pool of its own: slower, and
    provenance says why (the compiler's first error line)."""
    fake = tmp_path / "cc-without-openmp"
    fake.write_text('#!/bin/sh\nfor a in "$@"; do [ "$a" = -fopenmp ] && { echo "cc: error: no OpenMP here" >&2; '
                    'echo "second line" >&2; exit 1; }; done\nexec cc "$@"\n')  # fmt: skip
    fake.chmod(0o755)
    monkeypatch.setenv("CC", str(fake))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(native, "torch_openmp", lambda: True)
    if not native.load(masks.SOURCE, "masks-no-openmp", masks.FLAGS, masks._bind):
        pytest.skip("no C compiler here")
    assert not native.threaded("masks-no-openmp") and native.failure("masks-no-openmp") is None
    assert native.pooled("masks-no-openmp") == "the C build failed: cc: error: no OpenMP here"
    provider = dispatch.c_library("masks-no-openmp", lambda: True)
    monkeypatch.setattr(dispatch, "_KERNELS", dict(dispatch._KERNELS))
    dispatch.register("pool.test", "masks", dispatch.RESULTS, dispatch.Backend(provider, torch.neg))
    got = dispatch.plan("pool.test")
    assert (got.backend, got.preferred, got.reason, got.changes) == ("c+pool", "c+openmp", native.pooled("masks-no-openmp"),
                                                                     "speed")  # fmt: skip


# ---- a compiler that fails: a child process with a cache of its own ----


@pytest.mark.parametrize(
    "cc, reason",
    [("/nonexistent/cc", "no C compiler: /nonexistent/cc not found"),
     ("/bin/false", "the C build failed: /bin/false exited with status 1"),
     ("SCRIPT", "the C build failed: cc: error: unrecognized command-line option '-fbroken'")],
    ids=["missing", "silent", "first-error-line"],
)  # fmt: skip
def test_a_compiler_that_fails_says_why_in_provenance(tmp_path, cc, reason):
    if cc == "SCRIPT":  # a compiler whose error has several lines: the first one is the reason
        cc = tmp_path / "cc"
        cc.write_text("#!/bin/sh\necho \"cc: error: unrecognized command-line option '-fbroken'\" >&2\necho 'compilation "
                      "terminated.' >&2\nexit 1\n")  # fmt: skip
        cc.chmod(0o755)
    done = child(PROVENANCE + "; from models import native; print(native.failure('neurons'), '|', native.failure('masks'))",
                 tmp_path, CC=str(cc))  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    got = json.loads(lines[0])
    assert got == {"neurons": "torch", "neurons_fallback": reason, "neurons_changes": "rounding",
                   "masks": "torch-threads", "masks_fallback": reason, "masks_changes": "results",
                   "mask_generator": "torch, 8 chunks on threads",
                   "recurrent": "torch", "recurrent_fallback": "", "recurrent_changes": "",
                   "products": "torch", "products_fallback": reason, "products_changes": "rounding",
                   "event_products": f"dense ({reason})"}  # fmt: skip
    assert lines[1] == f"{reason} | {reason}"
    assert not list((tmp_path / "cache" / "snnbench").glob("*.so")), "a failed build leaves nothing in the cache"


def test_native_code_switched_off_says_so(tmp_path):
    done = child(PROVENANCE, tmp_path, SNNBENCH_NATIVE="0")
    got = json.loads(done.stdout)
    want = ("torch", "SNNBENCH_NATIVE=0", "torch-threads", "SNNBENCH_NATIVE=0", "results")
    assert (got["neurons"], got["neurons_fallback"], got["masks"], got["masks_fallback"], got["masks_changes"]) == want


@pytest.mark.skipif(triton_neurons.triton is None, reason="Triton is not installed")
def test_under_the_triton_interpreter_triton_takes_what_the_c_kernels_leave(tmp_path):
    """SNNBENCH_NATIVE=0 and TRITON_INTERPRET=1 (tests/test_triton_neurons.py's setting): Triton runs on CPU tensors."""
    code = ("import json, torch, models; from models import dispatch; c = torch.rand(3, 2, 5); "
            "a = (0.9, 1.0, 0.5, False, 'both'); p = dispatch.provenance('cpu'); "
            "print(json.dumps([p['neurons'], p['neurons_fallback'], dispatch.choose('snn.forward', c, *a).backend, "
            "dispatch.choose('snn.forward', c.double(), *a).reason]))")  # fmt: skip
    done = child(code, tmp_path, SNNBENCH_NATIVE="0", TRITON_INTERPRET="1")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == ["triton (torch: lif.backward)", "SNNBENCH_NATIVE=0", "triton",
                                       "SNNBENCH_NATIVE=0; float64"]  # fmt: skip


# ---- bench.run: a warning before training, or exit status 2 ----


def notes_for(models_, monkeypatch, **env):
    from bench import data, preflight

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    args = preflight.parse_args(["--models", *models_, "--device", "cpu"])
    preflight.check_models(args, data.load("mnist-mini"))
    return args, preflight.native_notes(args)


def test_native_notes_name_each_fallback_for_the_kernels_the_models_use(monkeypatch):
    monkeypatch.setattr(fused, "_native", False)
    monkeypatch.setattr(masks, "_native", False)
    monkeypatch.setattr(native, "_failures", {"neurons": "no C compiler: cc not found", "masks": "no C compiler: cc not found"})
    args, notes = notes_for(["snn", "ffn"], monkeypatch)
    assert set(args.kernels) == {"masks.uniform", "snn.forward", "snn.backward"}
    assert [n.split(" (")[0] for n in notes] == [
        "on cpu, the neuron recurrences are computed by torch's own operations, not the C kernels",
        "on cpu, the random masks and rate spikes are computed by torch's generators on threads, not the C kernels",
    ]
    assert all("(no C compiler: cc not found): " in n for n in notes)
    assert "the accuracies differ from a run with the C kernels, not only the speed" in notes[1]
    assert notes_for(["ffn"], monkeypatch)[1] == []  # no kernel of ours: nothing to say
    assert len(notes_for(["lif:encoding=direct"], monkeypatch)[1]) == 1  # no random draws: the neurons only
    with pytest.raises(UsageError, match=r"^SNNBENCH_REQUIRE_NATIVE=1 refuses the fallback\(s\) in effect: on cpu, the "
                                         r"neuron recurrences are computed by torch's own operations, not the C kernels \(no C "
                                         r"compiler: cc not found\); on cpu, the random masks"):  # fmt: skip
        notes_for(["snn"], monkeypatch, SNNBENCH_REQUIRE_NATIVE="1")
    assert notes_for(["ffn"], monkeypatch, SNNBENCH_REQUIRE_NATIVE="1")[1] == []


def test_with_the_c_kernels_there_is_nothing_to_say(built, monkeypatch):
    if native.pooled("neurons") or native.pooled("masks"):
        pytest.skip("the -fopenmp build failed here: that is a fallback of speed")
    assert notes_for(["snn", "lif"], monkeypatch, SNNBENCH_REQUIRE_NATIVE="1")[1] == []


@pytest.mark.slow
def test_bench_run_with_a_failing_compiler_warns_before_training_or_exits_2(tmp_path):
    run = ["--models", "snn", "--device", "cpu", "--epochs", "1", "--max-batches", "1", "--no-report", "--no-metrics"]
    full = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT), "CC": "/nonexistent/cc"}

    def bench_run(out: str, **env):
        return subprocess.run([sys.executable, "-m", "bench.run", *run, "--out", str(tmp_path / out)], capture_output=True,
                              text=True, env={**full, **env}, cwd=ROOT, timeout=600)  # fmt: skip

    warned = bench_run("warned")
    assert warned.returncode == 0, warned.stderr[-3000:]
    neurons = ("bench.run: warning: on cpu, the neuron recurrences are computed by torch's own operations, not the C "
               "kernels (no C compiler: /nonexistent/cc not found): slower, and with the same random numbers the float32 "
               "rounding differs (of the gradients, and of the event products' currents), which a spiking network's "
               "thresholds amplify over a training: its numbers drift from a run with the C kernels, not only in their "
               "last digits")  # fmt: skip
    draws = ("bench.run: warning: on cpu, the random masks and rate spikes are computed by torch's generators on threads, "
             "not the C kernels (no C compiler: /nonexistent/cc not found): the random numbers differ, so the accuracies "
             "differ from a run with the C kernels, not only the speed")  # fmt: skip
    assert warned.stderr.splitlines()[:2] == [neurons, draws]
    refused = bench_run("refused", SNNBENCH_REQUIRE_NATIVE="1")
    assert refused.returncode == 2
    assert refused.stderr.startswith("bench.run: error: SNNBENCH_REQUIRE_NATIVE=1 refuses the fallback(s) in effect: ")
    assert refused.stderr.count("\n") == 1 and not (tmp_path / "refused").exists()  # one line, nothing written
