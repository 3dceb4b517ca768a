"""The model file (charlm.nn.modelfile): a file stands alone, in a fresh process, with plain
Keras loading it."""

import textwrap

import numpy as np
import pytest

from tests.helpers import run_python


@pytest.mark.slow  # starts a subprocess
def test_fresh_process_load_gives_identical_logits(lm, tiny_model_path, tmp_path):
    tokens = lm.tokenizer.encode("the keys to the cabinet are on the table .\n")[None, :]
    logits, _ = lm.logits(tokens)
    np.save(tmp_path / "tokens.npy", tokens)
    np.save(tmp_path / "expected.npy", logits.numpy())
    # Only the .keras file, in a fresh interpreter, with plain Keras loading it.
    lonely = tmp_path / "alone" / "model.keras"
    lonely.parent.mkdir()
    lonely.write_bytes(tiny_model_path.read_bytes())
    script = textwrap.dedent(f"""
        import numpy as np, charlm, keras
        model = keras.saving.load_model({str(lonely)!r})
        tokens = np.load({str(tmp_path / "tokens.npy")!r})
        states = [np.zeros((1, t.shape[-1]), "float32") for t in model.inputs[1:]]
        logits = model([tokens, *states])[0].numpy()
        expected = np.load({str(tmp_path / "expected.npy")!r})
        assert np.array_equal(logits, expected), np.abs(logits - expected).max()
        lm = charlm.load({str(lonely)!r})
        assert lm.tokenizer.kind == "char" and lm.config.cell == "lstm"
        print("identical")
    """)
    result = run_python(script, cwd=tmp_path / "alone")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "identical" in result.stdout
