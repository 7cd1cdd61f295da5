"""The pipeline layer: many films in, their outputs and one report out (``medlung predict``, the bundle, serve, Dask).

It sits above inference (the Segmenter), the writers and the PACS senders,
and imports only downward (see ``docs/design.md``, "Layers").
"""

from medlung.pipeline.batch import FORMATS, PredictOptions, collect_inputs, predict_files, segment_one

__all__ = ["FORMATS", "PredictOptions", "collect_inputs", "predict_files", "segment_one"]
