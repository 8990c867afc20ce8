"""Training: the shared loop (`loop.py`) and one readable file per phase."""
