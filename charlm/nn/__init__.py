"""The network: its Keras model, charlm's own kernels for it, and the model file."""
