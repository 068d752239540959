"""snnbench: a spiking network against a feed-forward network, in accuracy and training cost."""

__version__ = "0.1.0"
