"""Writes expected.npz: outputs of main's library for the fixture run (see README.md)."""
import sys
import numpy as np
from lcflow_tf import evaluation
run_dir, out = sys.argv[1], sys.argv[2]
run = evaluation.load_run(run_dir)
flow = run.flow
assert not any((j.permutation.indices.numpy() == np.arange(j.event_shape[-1])).all()
               for j in flow.junctions), "the LC split must not be the identity"
images = np.stack([np.arange(64).reshape(8, 8, 1) % 17, np.full((8, 8, 1), 16),
                   np.zeros((8, 8, 1))]).astype(np.uint8)
x = (images.astype(np.float32) + 0.5) / 17
latent = np.random.default_rng(3).standard_normal((2, 8, 8, 1)).astype(np.float32) * 0.7
decoded = np.clip(np.floor(flow.decode(latent).numpy() * 17), 0, 16).astype(np.uint8)
np.savez(out, images=images, log_prob=flow.log_prob(x).numpy(), encoded=flow.encode(x).numpy(),
         latent=latent, decoded=decoded, step=run.step)
