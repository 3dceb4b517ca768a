"""The ``charlm`` command line: a thin click layer over the Python API.

Each command lives in its own module of :mod:`charlm.commands` and defines a
click command named ``command``; the group finds them there. Command modules
import charlm's heavy modules only inside the command function, so ``charlm --help``
and ``charlm COMMAND --help`` never start TensorFlow. Every failure a user can cause ends as one line on stderr and a non-zero
exit status; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import click

import charlm.commands
from charlm import __version__
from charlm.errors import CharlmError

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CharlmGroup(click.Group):
    """Finds commands in :mod:`charlm.commands` and turns errors into one line each."""

    def list_commands(self, ctx):
        return sorted(self._modules())

    def get_command(self, ctx, name):
        module = self._modules().get(name)
        return None if module is None else importlib.import_module(f"charlm.commands.{module}").command

    @staticmethod
    def _modules() -> dict[str, str]:
        """Command name -> its module's name (``import_`` for ``import``, a Python keyword)."""
        return {m.name.rstrip("_"): m.name for m in pkgutil.iter_modules(charlm.commands.__path__)}

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        args = list(sys.argv[1:] if args is None else args)
        debug = "--debug" in args
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Exit as done:
            result = done.exit_code
        except click.UsageError as error:
            _fail(f"{error.format_message()} (see 'charlm {_command(args)}--help')", EXIT_USAGE)
        except click.ClickException as error:
            _fail(error.format_message(), error.exit_code or EXIT_ERROR)
        except click.Abort:
            _fail("interrupted", EXIT_INTERRUPTED)
        except CharlmError as error:
            if debug:
                raise
            _fail(str(error), EXIT_ERROR)
        except Exception as error:  # anything unexpected: still one line, unless --debug
            if debug:
                raise
            _fail(f"internal error: {type(error).__name__}: {error} (rerun with --debug for details)", EXIT_ERROR)
        code = result if isinstance(result, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


def _command(args) -> str:
    words = [a for a in args if not a.startswith("-")]
    return f"{words[0]} " if words else ""


def _fail(message: str, code: int):
    # One line, whatever the message held.
    click.echo(f"charlm: error: {' '.join(str(message).split())}", err=True)
    sys.exit(code)


@click.group(cls=CharlmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="charlm")
@click.option("--debug", is_flag=True, help="Show Python tracebacks instead of one-line errors.")
def main(debug):
    """charlm: train recurrent (SimpleRNN, LSTM, GRU) language models on text,
    sample from them, and measure what they learned (perplexity, agreement)."""
