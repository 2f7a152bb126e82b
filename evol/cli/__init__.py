"""The command line: one module per subcommand under commands/, the shared options beside them."""
