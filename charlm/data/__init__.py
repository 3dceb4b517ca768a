"""From text to token ids in batches: tokenizers, corpus reading (files and TFDS), the cached
token file, and the B-stream layout of truncated BPTT. Nothing here imports TensorFlow, except
the TFDS source, which loads tensorflow_datasets only when a ``tfds:`` corpus is read."""
