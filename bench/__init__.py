"""snnbench: a spiking network against a feed-forward network, in accuracy and training cost."""

# The one version: pyproject.toml reads it from here (dynamic), run.json records it.
# 0.5: provenance segments per training, the segment column; 0.4: LIF models, --optimizer and its column;
# 0.3: run.json records kinds, layers, config
__version__ = "0.6.0"
