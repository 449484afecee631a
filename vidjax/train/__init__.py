"""Training: state, optimiser, jitted steps, checkpoints and the loop."""
