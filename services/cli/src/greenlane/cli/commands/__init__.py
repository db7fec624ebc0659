"""One module per greenlane subcommand, each with add_parser() and main()."""
