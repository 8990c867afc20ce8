"""What a user runs: the command line, the pipeline, its report, chat."""
