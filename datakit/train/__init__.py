"""Training on datakit datasets with TRL: SFT, DPO, KTO and reward-model entrypoints, and training diagnostics."""
