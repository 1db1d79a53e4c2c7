"""One module per ``hlmat`` subcommand (``add_parser`` + ``run``)."""
