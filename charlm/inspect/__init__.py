"""Looking inside a trained model.

- :mod:`charlm.inspect.activations`: every value inside the cells at every token (the one
  pass the others build on), and :mod:`charlm.inspect.text`: the text they read.
- :mod:`charlm.inspect.saturation` and :mod:`charlm.inspect.features`: what single units do
  (``charlm units``).
- :mod:`charlm.inspect.gradients`: how far back a prediction's gradient reaches
  (``charlm gradients``).
- :mod:`charlm.inspect.page`: the self-contained page of ``charlm show``.
- :mod:`charlm.inspect.plot`: their figures.
"""
