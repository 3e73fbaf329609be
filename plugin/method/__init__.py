"""The paper's method: losses, objective, sketch-photo pairs, training, evaluation."""
