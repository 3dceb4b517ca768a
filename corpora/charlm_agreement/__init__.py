"""The agreement language as a TensorFlow Datasets dataset (``tfds build``, ``charlm train tfds:charlm_agreement``)."""
