"""Looking inside a trained model.

- :mod:`charlm.inspect.activations`: every value inside the cells at every token (the one
  pass the others build on), and :mod:`charlm.inspect.text`: the text they read.
- :mod:`charlm.inspect.saturation` and :mod:`charlm.inspect.features`: what single units do
  (``charlm units``).
- :mod:`charlm.inspect.gradients`: how far back a prediction's gradient reaches
  (``charlm gradients``).
- :mod:`charlm.inspect.probe`: diagnostic classifiers for the subject's number at aligned
  positions of agreement items (:mod:`charlm.inspect.positions`), L2 logistic regression
  (:mod:`charlm.inspect.logistic`), and :mod:`charlm.inspect.intervene`: moving the state along
  them (``charlm probe``).
- :mod:`charlm.inspect.page`: the self-contained page of ``charlm show``.
- :mod:`charlm.inspect.plot`: their figures.
"""
