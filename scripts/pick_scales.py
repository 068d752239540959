"""Print each model's picked learning-rate scale in a grid run, as the report picks it (report/tuned.py: the best
mean final validation accuracy over seeds; on a tie the scale nearest 1): one ``MODEL SCALE`` line per model.

    python scripts/pick_scales.py RUN_DIR [RUN_DIR ...]

Used by scripts/smnist_reference.sh to carry a grid's picks into the 5-seed runs; exits 2 when the folders hold no
grid with a validation split (a pick on the test set would leak into the result it is then scored on).
"""

from __future__ import annotations

import sys

from report import load, tuned


def main(argv: list[str]) -> int:
    if not argv:
        print("pick_scales: give the run folder(s) of a learning-rate grid", file=sys.stderr)
        return 2
    results = load.load(argv)
    data = results.epochs
    if data.empty or not tuned.has_grid(data) or data["val_accuracy"].isna().all():
        print(f"pick_scales: {' '.join(argv)} holds no learning-rate grid with a validation split", file=sys.stderr)
        return 2
    picked = tuned.scores(tuned.per_training(data), validated=True)
    for row in picked[picked["picked"]].itertuples():
        print(f"{row.model} {row.lr_scale:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
