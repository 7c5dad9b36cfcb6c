"""Does the likelihood-contribution split help? The ablation (`ablation`: split rules at the
same budget, and the run-record machinery the numerics benchmarks share), the pre-registered
split study (`split_study`), why a rule keeps what it keeps (`lc_anatomy`), the per-image
spread of held-out bits/dim (`heldout_spread`) and what pairing by seed buys
(`paired_spread`)."""
