"""snnbench: a spiking network against a feed-forward network, in accuracy and training cost."""

__version__ = "0.2.0"  # 0.2: the activity and cost columns, neuron activity, the gradient window
