"""Services: what runs for hours around the pipeline.

* :mod:`medlung.services.node`: ``medlung serve``, a DICOM node that segments
  the films a PACS sends it and stores the SEGs back (its durable queue in
  :mod:`medlung.services.node.spool`);
* :mod:`medlung.services.distributed`: ``medlung predict --scheduler``, the
  driver of a Dask cluster.

Both take films through :func:`medlung.pipeline.batch.segment_one`, so a film
gets the same outputs (and SEG UIDs) whichever door it came in by.
"""
