"""An example snnbench plug-in: a convolutional SNN (``conv-snn``) and a CSV-backed dataset (``blobs``)."""
