"""GPU benchmarks built on the training step (engine/): the training path against its peers."""
