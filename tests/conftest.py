import matplotlib
import pytest
import torch

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _seed_and_close_figures():
    torch.manual_seed(0)
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture(params=["native", "torch-threads"])
def generator(request, monkeypatch):
    """Each way the CPU masks are drawn: the native kernel (models/_masks.c) and torch generators on threads."""
    from models import masks as mask_rng

    if request.param == "native":
        if not mask_rng.native():
            pytest.skip("no C compiler here: the native generator is unavailable")
    else:
        monkeypatch.setattr(mask_rng, "_native", False)  # as SNNBENCH_NATIVE=0
    return request.param
