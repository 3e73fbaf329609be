"""The hermetic miniature: a generated world, the stand-in CLIP's pretraining, reproduce, demo."""
