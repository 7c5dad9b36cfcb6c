"""How much a result moves and where the numbers go wrong: seed-to-seed and float-order
spread (`noise_floor`), finite samples and exact round trips of trained runs (`robustness`),
the round trip layer by layer (`round_trip_anatomy`) and training step by step
(`training_trace`)."""
