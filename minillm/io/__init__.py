"""What goes to and from disk: checkpoints, atomic files, Hugging Face directories, plots."""
