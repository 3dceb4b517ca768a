"""One module per ``charlm`` subcommand, each defining a click command named ``command``."""
