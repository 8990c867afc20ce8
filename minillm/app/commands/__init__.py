"""One module per `minillm` command group, each with `register(subparsers)`."""
