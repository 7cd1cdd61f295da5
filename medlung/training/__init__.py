"""Training: configuration, the loop, figures."""

from medlung.training.config import TrainConfig

__all__ = ["TrainConfig"]
