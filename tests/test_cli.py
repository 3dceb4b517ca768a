"""The command line as a whole (charlm.cli): `python -m charlm` works like `charlm`, usage errors
are one line, and what needs no model never starts TensorFlow: `charlm --help`, every command's
--help, `charlm info`, and the modules those import."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import charlm.commands
from tests.helpers import assert_one_line_error, invoke, run_python

# Every command, as the group finds them: one module of charlm.commands each.
COMMANDS = sorted(m.name.rstrip("_") for m in pkgutil.iter_modules(charlm.commands.__path__))

# Modules that must never import TensorFlow or Keras: the command line, the settings, the data
# pipeline up to the token file, the model file's record, the agreement formats and statistics,
# and the training helpers without a model. Every charlm.commands module is added in the test.
LIGHT_MODULES = [
    "charlm", "charlm.cli", "charlm.config", "charlm.errors", "charlm.fileio", "charlm.runtime",
    "charlm.data.tokenizers", "charlm.data.corpus", "charlm.data.tfds_source", "charlm.data.tokenfile",
    "charlm.data.streams", "charlm.data.prepare", "charlm.nn.modelfile", "charlm.nn.safety", "charlm.nn.modelinfo",
    "charlm.agreement", "charlm.agreement.formats", "charlm.agreement.stats", "charlm.training.schedule",
    "charlm.training.progress", "charlm.training.finetune",
]

NO_TENSORFLOW = (
    "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
    "assert not heavy, 'TensorFlow imported: ' + ', '.join(heavy[:5])\n"
)


@pytest.mark.slow  # starts a subprocess
def test_python_m_charlm_help():
    run = subprocess.run([sys.executable, "-m", "charlm", "--help"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("Usage: charlm")
    assert {"train", "sample", "eval", "score", "agree", "info", "plot", "export"} <= set(COMMANDS)
    for name in COMMANDS:
        assert f"  {name} " in run.stdout, name


@pytest.mark.slow  # starts a subprocess
def test_python_m_charlm_error_is_one_line(tmp_path):
    run = subprocess.run([sys.executable, "-m", "charlm", "plot", str(tmp_path)], capture_output=True, text=True,
                         timeout=120)
    assert_one_line_error(run, "has no history.json")


def test_unknown_choice_is_one_line_usage_error(tiny_corpus):
    assert_one_line_error(invoke("train", tiny_corpus, "--cell", "transformer"), "--cell", "'transformer'",
                          "charlm train --help", code=2)


def test_unknown_command_is_one_line_usage_error():
    assert_one_line_error(invoke("trian"), "No such command 'trian'", code=2)


@pytest.mark.slow  # starts a subprocess
def test_help_does_not_import_tensorflow():
    result = run_python("import sys\nfrom charlm.cli import main\n"
                        "code = main(['--help'], prog_name='charlm', standalone_mode=False)\n"
                        "assert code == 0\n" + NO_TENSORFLOW)
    assert result.returncode == 0, result.stderr + result.stdout
    assert result.stdout.startswith("Usage: charlm") and "  train " in result.stdout


@pytest.mark.slow  # starts a subprocess
@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_does_not_import_tensorflow(command):
    result = run_python("import sys\nfrom charlm.cli import main\n"
                        f"code = main([{command!r}, '--help'], prog_name='charlm', standalone_mode=False)\n"
                        "assert code == 0\n" + NO_TENSORFLOW)
    assert result.returncode == 0, result.stderr + result.stdout
    assert result.stdout.startswith(f"Usage: charlm {command}")


@pytest.mark.slow  # starts a subprocess
@pytest.mark.parametrize("flags", [[], ["--json"]])
def test_info_does_not_import_tensorflow(tiny_model_path, flags):
    """`charlm info` reads the model file's record and weight shapes without Keras."""
    result = run_python("import sys\nfrom charlm.cli import main\n"
                        f"code = main(['info', *{flags!r}, sys.argv[1]], prog_name='charlm', standalone_mode=False)\n"
                        "assert code == 0\n" + NO_TENSORFLOW, tiny_model_path)
    assert result.returncode == 0, result.stderr + result.stdout
    if flags:
        assert '"cell": "lstm"' in result.stdout
    else:
        assert "charlm 2x32 LSTM language model" in result.stdout


@pytest.mark.slow  # starts a subprocess
def test_light_modules_never_import_tensorflow():
    result = run_python(
        "import importlib, pkgutil, sys\n"
        f"names = {LIGHT_MODULES!r}\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "import charlm.commands\n"
        "commands = [f'charlm.commands.{m.name}' for m in pkgutil.iter_modules(charlm.commands.__path__)]\n"
        "assert len(commands) >= 8, commands\n"
        "for name in commands:\n"
        "    importlib.import_module(name)\n"
        + NO_TENSORFLOW +
        "print(len(names) + len(commands))\n"
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert int(result.stdout.split()[-1]) >= len(LIGHT_MODULES) + 8
