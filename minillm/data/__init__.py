"""Data for every phase of the lecture: readers for users' files and the tiny-world datasets.

Readers turn plain text, demonstrations, preference pairs and prompts, in the common JSON
Lines layouts, into minillm's records; `gold_score` is the simulated labeler of the shipped
tiny world (`minillm data make-world --out data/ --overwrite` rebuilds its files). This package
imports nothing from the model or autograd code.
"""
from minillm.data.gold import gold_score
from minillm.data.readers import (DataError, Records, read_demonstrations, read_preferences,
                                  read_prompts, read_text)

__all__ = ["DataError", "Records", "gold_score", "read_demonstrations", "read_preferences",
           "read_prompts", "read_text"]
