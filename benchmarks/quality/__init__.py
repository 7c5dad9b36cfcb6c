"""What a sample-quality distance can be compared against: the feature classifier and the
Frechet distances between sets of real images (`sample_quality`)."""
