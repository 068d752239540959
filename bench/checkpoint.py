"""Checkpoints: what one training needs to go on after an epoch as if it had never stopped.

``<run>/checkpoints/<name>.pt`` holds the model's weights, every RNG state the next epoch
draws from (torch CPU, the CUDA or MPS device, the data-shuffling generator) and the epoch's
CSV row. No optimizer state: the loop makes a fresh SGD each epoch, as in 2018, so the
momentum buffer is zero at every epoch start anyway.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.results import atomic_write

FORMAT = 1
Key = tuple[str, str, int]  # (model label, device, seed): one training


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or belongs to another training; one line for the user."""


def file_name(key: Key) -> str:
    """A portable file name for a training; the hash keeps two labels that slug alike apart."""
    model, device, seed = key
    slug = re.sub(r"[^A-Za-z0-9.=-]+", "_", f"{model}_{device}_seed{seed}")
    digest = hashlib.sha1(f"{model}\0{device}\0{seed}".encode()).hexdigest()[:8]
    return f"{slug}-{digest}.pt"


def rng_state(device: str, shuffle: torch.Generator) -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state(), "shuffle": shuffle.get_state()}
    if device.startswith("cuda"):
        state["cuda"] = torch.cuda.get_rng_state(device)
    elif device == "mps":
        state["mps"] = torch.mps.get_rng_state()
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: str, shuffle: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    shuffle.set_state(state["shuffle"])
    if device.startswith("cuda"):
        torch.cuda.set_rng_state(state["cuda"], device)
    elif device == "mps":
        torch.mps.set_rng_state(state["mps"])


class Checkpoints:
    """The checkpoint folder of one run; ``keep=False`` removes a training's file once it has ended."""

    def __init__(self, run_dir: str | Path, keep: bool = False):
        self.folder = Path(run_dir) / "checkpoints"
        self.keep = keep

    def path(self, key: Key) -> Path:
        return self.folder / file_name(key)

    def save(self, key: Key, epoch: int, row: dict[str, Any], model: nn.Module, shuffle: torch.Generator) -> None:
        """Atomically replace ``key``'s checkpoint with the state after ``epoch``."""
        self.folder.mkdir(exist_ok=True)
        state = {
            "format": FORMAT, "key": list(key), "epoch": epoch, "row": row,
            "model": model.state_dict(), "rng": rng_state(key[1], shuffle),
        }  # fmt: skip
        atomic_write(self.path(key), lambda f: torch.save(state, f), mode="wb")

    def restore(self, key: Key, model: nn.Module, shuffle: torch.Generator) -> tuple[int, dict[str, Any] | None]:
        """Load ``key``'s checkpoint into ``model`` and the RNGs: (epochs done, that epoch's row); (0, None) if none."""
        path = self.path(key)
        if not path.exists():
            return 0, None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many kinds for a damaged file
            raise CheckpointError(f"cannot read checkpoint {path} ({type(exc).__name__}: {str(exc)[:120]})") from None
        if state.get("format") != FORMAT or tuple(state.get("key", ())) != tuple(key):
            raise CheckpointError(f"checkpoint {path} is not one of {key[0]} on {key[1]} with seed {key[2]}")
        model.load_state_dict(state["model"])
        set_rng_state(state["rng"], key[1], shuffle)
        return state["epoch"], state["row"]

    def remove(self, key: Key) -> None:
        if self.keep:
            return
        self.path(key).unlink(missing_ok=True)
        try:
            self.folder.rmdir()  # only when empty: the last training's checkpoint is gone
        except OSError:
            pass
