"""The Keras model charlm builds (charlm.nn.model): on a GPU its layers insist on cuDNN, and
its files load anywhere."""

import pytest


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gpu_models_insist_on_cudnn_and_their_files_load_anywhere(cell, tmp_path):
    """On a GPU the layers are built with use_cudnn=True: no cuDNN (here, a CPU) fails loudly
    instead of falling back to the slow loop; the saved file has Keras' default, "auto"."""
    import tensorflow as tf

    from charlm.config import ModelConfig
    from charlm.nn.lm import LanguageModel, load
    from charlm.nn.model import build_model, recurrent_layers
    from charlm.data.tokenizers import CharTokenizer

    config = ModelConfig(cell=cell, layers=2, hidden=8, embedding=4)
    tokenizer = CharTokenizer.build("abc")
    model = build_model(config, tokenizer.vocab_size, on_gpu=True)
    assert [layer.use_cudnn for layer in recurrent_layers(model)] == [True, True]
    inputs = [tf.zeros((2, 5), tf.int32), *[tf.zeros((2, 8))] * (2 * config.states_per_layer)]
    with pytest.raises(ValueError, match="cuDNN is not supported"):
        model(inputs)
    loaded = load(LanguageModel(model, tokenizer, config).save(tmp_path / "gpu.keras"))
    assert [layer.use_cudnn for layer in recurrent_layers(loaded.model)] == ["auto", "auto"]
    assert loaded.model(inputs)[0].shape == (2, 5, tokenizer.vocab_size)
