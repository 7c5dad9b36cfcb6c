"""Ours against TFP's `tfb.Glow` and normflows' Glow, trained on one stream: the command
(`peer_glow`), what the models share (`peer_protocol`), the TensorFlow models and worker
(`peer_models`, `peer_worker`), the PyTorch worker (`normflows_worker`, its own venv:
requirements-peers.txt), the per-model records (`records`) and the tables (`peer_report`)."""
