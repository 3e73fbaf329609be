"""The model: specs, precision, the CLIP encoder, the composer, checkpoints, remote encoding."""
