"""The pipeline layer: many films in, their outputs and one report out (``medlung predict``, the bundle, serve, Dask).

It sits above inference (the Segmenter), the writers and the PACS senders,
and imports only downward (see ``docs/design.md``, "Layers").
"""

from medlung.pipeline.batch import collect_inputs, predict_files, segment_one
from medlung.pipeline.settings import PredictSettings, load_segmenter

__all__ = ["PredictSettings", "collect_inputs", "load_segmenter", "predict_files", "segment_one"]
