"""Looking inside a trained model: the values inside its cells at every token
(:mod:`charlm.inspect.activations`)."""
