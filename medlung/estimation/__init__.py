"""The estimated Dice of a mask without ground truth: evidence, shape model, calibration, degraded films.

* :mod:`medlung.estimation.evidence`: what one film's network output says about its mask's quality;
* :mod:`medlung.estimation.shape_model`: a statistical shape model of lung masks (principal components);
* :mod:`medlung.estimation.calibration`: the fitted regressor that turns evidence into a Dice with an
  interval, stored in a bundle beside the weights (``models/dice_estimate.json``);
* :mod:`medlung.estimation.degrade`: degraded copies of films (noise, blur, windowing, crops ...), the
  low-quality examples the calibration learns from.

numpy/scipy/scikit-image only: no torch.
"""
