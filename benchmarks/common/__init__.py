"""What every benchmark uses: result records (`results`), worker processes (`procs`), the
training step of the timing scripts (`harness`), 95% intervals (`intervals`) and figures
(`figures`). Imports no other benchmark package."""
