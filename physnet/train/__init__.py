"""Training energy models with PyTorch Lightning."""

from physnet.train.config import RunConfig, load_config

__all__ = ["RunConfig", "load_config"]
