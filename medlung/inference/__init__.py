"""Inference: the Segmenter (film -> LungMasks on the native grid) and its post-processing."""

from medlung.inference.segmenter import LungMasks, ModelSpec, Segmenter, load_model

__all__ = ["LungMasks", "ModelSpec", "Segmenter", "load_model"]
