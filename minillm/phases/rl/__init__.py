"""Phase 3's optimisation of the language model: rollouts, REINFORCE/RLOO, PPO, GRPO, DPO, best-of-n."""
