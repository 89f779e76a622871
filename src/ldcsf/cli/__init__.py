"""The `ldcsf` command line: one thin module per subcommand; all work is done by library functions."""
