"""`python -m charlm` works like `charlm`; help for the inspection and export commands
needs no TensorFlow."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import assert_one_line_error


def test_python_m_charlm_help():
    run = subprocess.run([sys.executable, "-m", "charlm", "--help"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("Usage: charlm")
    for name in ("train", "info", "plot", "export"):
        assert f"  {name} " in run.stdout


def test_python_m_charlm_error_is_one_line(tmp_path):
    run = subprocess.run([sys.executable, "-m", "charlm", "plot", str(tmp_path)], capture_output=True, text=True,
                         timeout=120)
    assert_one_line_error(run, "has no history.json")


@pytest.mark.parametrize("command", ["info", "plot", "export"])
def test_command_help_does_not_import_tensorflow(command):
    code = (
        "import sys\nfrom charlm.cli import main\n"
        f"code = main([{command!r}, '--help'], prog_name='charlm', standalone_mode=False)\n"
        "assert code == 0\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow imported'\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr + run.stdout
    assert "Usage: charlm" in run.stdout
