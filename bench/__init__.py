"""snnbench: a spiking network against a feed-forward network, in accuracy and training cost."""

# The one version: pyproject.toml reads it from here (dynamic), run.json records it.
__version__ = "0.3.0"  # 0.3: run.json records each model's kind and layers and the whole training config
