"""The training phases of the lecture: pretraining, SFT, the reward model, and (in rl/) RLHF and its relatives."""
