"""What things cost: a training step against image size and depth (`scaling`), collecting LC
statistics (`lc_overhead`), computing log-dets with the transform (`log_det_cost`), the exported
SavedModel's latency (`export_latency`) and where a training step spends its time
(`profile_step`, which the peer benchmark runs)."""
