"""One module per subcommand: each has ``add_parser(subparsers)`` and sets ``func`` to its handler."""
