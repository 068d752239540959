"""Checkpoints: what one training needs to go on after an epoch as if it had never stopped.

``<run>/checkpoints/<training>.pt`` holds the model's weights, the optimizer's state, every RNG
state the next epoch draws from (torch CPU, the CUDA or MPS device, the data-shuffling
generator) and the epoch's CSV row. Format 1 (snnbench before 0.3) had no optimizer state: its
SGD was made fresh each epoch, so there was none to keep; such checkpoints still restore.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.results import atomic_write
from bench.schema import TrainingKey

FORMAT = 2
READABLE = (1, 2)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or belongs to another training; one line for the user."""


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
    """The checkpoint folder of one run."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def path(self, key: TrainingKey) -> Path:
        return self.folder / f"{key.file_stem()}.pt"

    def save(self, key: TrainingKey, epoch: int, row: dict[str, Any], model: nn.Module,
             optimizer: torch.optim.Optimizer | None, shuffle: torch.Generator, extra: dict | None = None) -> None:  # fmt: skip
        """Atomically replace ``key``'s checkpoint with the state after ``epoch``; ``extra``: what else the training
        needs to go on as it would have (the early stopping's best validation loss), read back by ``extra``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        state = {
            "format": FORMAT, "key": list(key), "epoch": epoch, "row": row, "model": model.state_dict(),
            "optimizer": optimizer.state_dict() if optimizer is not None else None, "rng": rng_state(key.device, shuffle),
            **({"extra": extra} if extra else {}),
        }  # fmt: skip
        atomic_write(self.path(key), lambda f: torch.save(state, f), mode="wb")

    def restore(self, key: TrainingKey, model: nn.Module, shuffle: torch.Generator) -> tuple[int, dict | None, dict | None]:
        """Load ``key``'s checkpoint into ``model`` and the RNGs: (epochs done, that epoch's row, the optimizer's
        state dict or None); (0, None, None) if there is none."""
        state = self._load(key)
        if state is None:
            return 0, None, None
        model.load_state_dict(state["model"])
        set_rng_state(state["rng"], key.device, shuffle)
        return state["epoch"], state["row"], state.get("optimizer")

    def extra(self, key: TrainingKey) -> dict[str, Any]:
        """The ``extra`` that ``key``'s checkpoint was saved with ({} without a checkpoint or an extra)."""
        state = self._load(key)
        return dict(state.get("extra") or {}) if state is not None else {}

    def peek(self, key: TrainingKey) -> tuple[int, dict[str, Any]] | None:
        """The epoch and the CSV row that ``key``'s checkpoint holds, restoring nothing; None if there is none."""
        state = self._load(key)
        return None if state is None else (state["epoch"], state["row"])

    def _load(self, key: TrainingKey) -> dict[str, Any] | None:
        """``key``'s checkpoint as saved, checked to be one of ``key``; None if there is none; else CheckpointError."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many kinds for a damaged file
            raise CheckpointError(f"cannot read checkpoint {path} ({type(exc).__name__}: {str(exc)[:120]})") from None
        recorded = (state.get("key") if isinstance(state, dict) else None) or ()
        if not recorded or state.get("format") not in READABLE or not 3 <= len(recorded) <= 5 or TrainingKey(*recorded) != key:
            raise CheckpointError(f"checkpoint {path} is not one of {key.model} on {key.device} with seed {key.seed}")
        return state

    def remove(self, key: TrainingKey) -> None:
        self.path(key).unlink(missing_ok=True)
        try:
            self.folder.rmdir()  # only when empty: the last training's checkpoint is gone
        except OSError:
            pass
