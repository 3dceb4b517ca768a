"""``python -m charlm`` works like the ``charlm`` command."""

from charlm.cli import main

main(prog_name="charlm")
