"""PyTorch worker of benchmarks/peer_glow.py: normflows' multi-scale Glow.

Runs under the Python of the PyTorch venv (benchmarks/requirements-peers.txt) and never
imports TensorFlow. It trains on the stream exported by `peer_protocol.export_stream` with a
`peer_protocol.Recipe`, answers the parent's requests with the protocol of
`benchmarks/peer_worker.py` (`procs.serve`: train / time / evaluate / reconstruction /
samples / peak_rss) and reports checksums of the batches it used.

The model is normflows' own Glow, built as in its Glow example (`examples/glow_colab.ipynb`
of normflows' repository) but unconditional: `nf.MultiscaleFlow` of L levels, each K
`nf.flows.GlowBlock`s (image -> latent: ActNorm, LU-parametrised 1x1 convolution, affine
channel coupling with scale `sigmoid(h + 2)` and a conv3x3-ReLU-conv1x1-ReLU-zero-conv3x3
conditioner) plus `nf.flows.Squeeze`, halves merged by `nf.flows.Merge`, and one
`nf.distributions.GlowBase` per level (a diagonal Gaussian with a learned mean and log-scale
per channel, shared by all positions; not conditioned on the kept half).

normflows' `sample` returns the samples with their log-density from one pass, so its
"sample" and "sample_and_log_prob" timings are the same call.

  <torch venv>/bin/python benchmarks/normflows_worker.py --stream DIR --config JSON
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import normflows as nf  # pylint: disable=g-import-not-at-top
import numpy as np
import torch

from benchmarks import peer_protocol
from benchmarks import procs

ADAM_EPSILON = 1e-7  # Keras' Adam default, which our model's optimizer uses


def build_glow(image_shape, levels, steps_per_level, width):
  """normflows' multi-scale Glow over images [C, H, W] = `image_shape` (H, W, C) transposed.

  normflows orders levels from the latent side: level 0 is the coarsest. Going image ->
  latent, the finest level squeezes [C, H, W] to [4C, H/2, W/2], runs K Glow blocks and
  factors out half the channels; the coarsest level keeps all of them.

  Args:
    image_shape: (H, W, C); H and W divisible by 2**levels.
    levels: L.
    steps_per_level: K.
    width: hidden channels of the coupling conditioners.

  Returns:
    The `nf.MultiscaleFlow` (unconditional).
  """
  h, w, c = image_shape
  if h % 2 ** levels or w % 2 ** levels:
    raise ValueError(f"build_glow: H and W must be divisible by 2**levels = {2 ** levels}, "
                     f"got image_shape {image_shape}.")
  q0, flows, merges = [], [], []
  for i in range(levels):
    scale = 2 ** (levels - i)  # spatial down-scaling of this level's factored-out latent
    blocks = [nf.flows.GlowBlock(c * 2 * scale, width, scale=True, scale_map="sigmoid",
                                 split_mode="channel", use_lu=True)
              for _ in range(steps_per_level)]
    flows.append(blocks + [nf.flows.Squeeze()])
    if i == 0:  # the top latent: all channels of the coarsest level
      latent = (c * 2 * scale, h // scale, w // scale)
    else:
      merges.append(nf.flows.Merge())
      latent = (c * scale, h // scale, w // scale)
    q0.append(nf.distributions.GlowBase(latent))
  return nf.MultiscaleFlow(q0, flows, merges, class_cond=False)


def parameter_counts(model):
  """(elements of all nn.Parameters, those the model uses).

  normflows' LU 1x1 convolution keeps L and U as full C x C parameters of which it uses the
  strict lower / upper triangle (the diagonal lives in log_S): C * (C + 1) elements per
  convolution get no gradient.
  """
  total = sum(p.numel() for p in model.parameters())
  unused = sum(m.num_channels * (m.num_channels + 1) for m in model.modules()
               if isinstance(m, nf.flows.Invertible1x1Conv) and m.use_lu)
  return total, total - unused


class WeightAverage:
  """Exponential moving average of parameters with `peer_protocol.ema_decay`'s warm start."""

  def __init__(self, parameters, decay):
    self.parameters = list(parameters)
    self.decay = decay
    self.average = [p.detach().clone() for p in self.parameters]
    self.updates = 0

  @torch.no_grad()
  def update(self):
    weight = 1.0 - peer_protocol.ema_decay(self.decay, self.updates)
    for a, p in zip(self.average, self.parameters):
      a.lerp_(p, weight)
    self.updates += 1

  @torch.no_grad()
  def swap(self):
    """Exchanges the parameters' values with the average (twice: back to where it was)."""
    for a, p in zip(self.average, self.parameters):
      value = p.detach().clone()
      p.copy_(a)
      a.copy_(value)


def to_torch(x):
  """float32 NHWC numpy images -> NCHW torch tensor (a copy)."""
  return torch.tensor(np.transpose(x, (0, 3, 1, 2)))


def serve(stream_dir, config):
  """Builds the model and answers the parent's requests until it quits."""
  if config["threads"]:
    torch.set_num_threads(config["threads"])
  torch.manual_seed(config["seed"])
  recipe = peer_protocol.Recipe(**config["recipe"])
  meta = peer_protocol.read_meta(stream_dir)
  image_shape = tuple(meta["image_shape"])
  dims = int(np.prod(image_shape))
  reader = peer_protocol.StreamReader(stream_dir)
  test = peer_protocol.load_test(stream_dir)
  model = build_glow(image_shape, config["levels"], config["steps_per_level"], config["width"])
  parameters = [p for p in model.parameters() if p.requires_grad]
  optimizer_class = torch.optim.Adam if recipe.optimizer == "adam" else torch.optim.Adamax
  extra = {"eps": ADAM_EPSILON} if recipe.optimizer == "adam" else {}
  optimizer = optimizer_class(parameters, lr=recipe.learning_rate,
                              weight_decay=recipe.weight_decay, **extra)
  state = {"step": 0, "average": None, "averaged_in": False}

  def rate(step):
    return peer_protocol.learning_rate(step, recipe.learning_rate, recipe.lr_warmup,
                                       recipe.lr_schedule, config["steps"], recipe.lr_min_ratio)

  def train_step(x):
    loss = -torch.mean(model.log_prob(x, None))
    optimizer.zero_grad(set_to_none=True)
    if recipe.skip_nonfinite and not torch.isfinite(loss):
      return loss.item(), float("nan"), True  # normflows' example skips such a step
    loss.backward()
    grads = [p.grad for p in parameters if p.grad is not None]
    if recipe.grad_clip_norm is not None:
      norm = torch.nn.utils.clip_grad_norm_(parameters, recipe.grad_clip_norm)
    else:
      norm = torch.nn.utils.get_total_norm(grads)
    for group in optimizer.param_groups:
      group["lr"] = rate(state["step"])
    optimizer.step()
    if state["average"] is not None:
      state["average"].update()
    return loss.item(), norm.item(), False  # the gradient norm before clipping

  def train(n):
    if state["averaged_in"]:
      raise RuntimeError("train: the averaged weights were already swapped in for evaluation")
    losses, norms, rates, skipped, checksums = [], [], [], 0, []
    start = time.perf_counter()
    for i in range(n):
      batch = reader.batch(state["step"])
      x = to_torch(batch)
      if state["step"] == 0:
        with torch.no_grad():
          model.log_prob(x, None)  # data-dependent ActNorm initialisation on the first batch
        if recipe.ema_decay > 0:
          state["average"] = WeightAverage(parameters, recipe.ema_decay)
      rates.append(rate(state["step"]))
      loss, norm, skip = train_step(x)
      losses.append(loss)
      norms.append(norm)
      skipped += skip
      if i in (0, n - 1):
        checksums.append([state["step"], peer_protocol.checksum(batch)])
      state["step"] += 1
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "losses": losses, "grad_norms": norms, "skipped": skipped,
            "checksums": checksums, "learning_rates": rates}

  def averaged_in():
    """After training: evaluate the averaged weights when the recipe keeps an average."""
    if state["average"] is not None and not state["averaged_in"]:
      state["average"].swap()
    state["averaged_in"] = True

  fixed = to_torch(test[:config["log_prob_batch"]])
  timed_calls = {"log_prob": lambda: model.log_prob(fixed, None),
                 "sample": lambda: model.sample(config["sample_count"])[0],
                 "sample_and_log_prob": lambda: model.sample(config["sample_count"])[1]}

  @torch.no_grad()
  def timed(what, repeats):
    averaged_in()
    fn = timed_calls[what]
    fn()  # warm up
    times = []
    for _ in range(repeats):
      start = time.perf_counter()
      out = fn()
      times.append(time.perf_counter() - start)
    return {"seconds": times, "finite": float(np.mean(np.isfinite(out.numpy())))}

  def batches(images):
    for i in range(0, len(images), config["eval_batch"]):
      yield to_torch(images[i:i + config["eval_batch"]])

  @torch.no_grad()
  def test_bits_per_dim():
    start = time.perf_counter()
    log_probs = [model.log_prob(x, None).double().numpy() for x in batches(test)]
    bpd = peer_protocol.bits_per_dim(np.concatenate(log_probs), dims, meta["num_bins"])
    first = bpd[:peer_protocol.TEST_FIRST_IMAGES]
    return {"bpd_all": float(np.mean(bpd)), "n_all": len(bpd), "bpd_first": float(np.mean(first)),
            "n_first": len(first), "finite": float(np.mean(np.isfinite(bpd))),
            "seconds": time.perf_counter() - start}

  def evaluate():
    """Test bits/dim (with the averaged weights, if any; then also with the raw ones)."""
    averaged_in()
    answer = dict(test_bits_per_dim(), averaged=state["average"] is not None,
                  test_checksum=peer_protocol.checksum(test))
    if state["average"] is not None:
      state["average"].swap()
      answer["raw_weights"] = test_bits_per_dim()
      state["average"].swap()
    return answer

  @torch.no_grad()
  def sample(n, temperature, seed):
    """n samples NHWC (float32 numpy), latents at `temperature`, seeded by `seed`."""
    torch.manual_seed(seed)
    x, _ = model.sample(n, temperature=float(temperature))
    return np.transpose(x.numpy(), (0, 2, 3, 1)).astype(np.float32)

  @torch.no_grad()
  def max_errors(images):
    """Per-image max |forward(inverse(x)) - x| (NaN where the round trip is not finite)."""
    errors = []
    for x in batches(images):
      z, _ = model.inverse_and_log_det(x)
      back, _ = model.forward_and_log_det(z)
      error = torch.amax(torch.abs(back - x), dim=(1, 2, 3))
      finite = torch.isfinite(back).all(dim=(1, 2, 3))
      errors.append(torch.where(finite, error, torch.full_like(error, float("nan"))).numpy())
    return np.concatenate(errors) if errors else np.zeros(0)

  def reconstruction(samples):
    averaged_in()
    drawn = np.concatenate([sample(min(config["eval_batch"], samples - i), 1.0, 1000 + i)
                            for i in range(0, samples, config["eval_batch"])])
    return peer_protocol.round_trip_summary(max_errors(test), drawn, max_errors)

  def samples(n, temperature, seed, path):
    averaged_in()
    x = sample(n, temperature, seed)
    np.save(path, x)
    return {"path": path, "finite": float(np.mean(np.all(np.isfinite(x), axis=(1, 2, 3))))}

  total, used = parameter_counts(model)
  procs.serve(
      {"parameters": total, "parameters_used": used, "image_shape": list(image_shape),
       "num_bins": meta["num_bins"], "rss_after_setup_mb": procs.current_rss_mb(),
       "torch": torch.__version__, "normflows": nf.__version__,
       "threads": torch.get_num_threads(),
       "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
       "model": (f"normflows MultiscaleFlow of {config['levels']} levels x "
                 f"{config['steps_per_level']} GlowBlock(scale_map='sigmoid', "
                 "split_mode='channel', use_lu=True) + Squeeze, GlowBase per level")},
      {"train": train, "time": timed, "evaluate": evaluate, "reconstruction": reconstruction,
       "samples": samples, "peak_rss": lambda: {"peak_rss_mb": procs.peak_rss_mb()}})
  reader.close()


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--stream", required=True, help="directory written by export_stream")
  parser.add_argument("--config", required=True, help="JSON settings from peer_glow.py")
  args = parser.parse_args()
  config = json.loads(args.config)
  try:
    peer_protocol.Recipe(**config["recipe"])
  except (TypeError, ValueError) as e:
    parser.error(f"--config: {e}")
  serve(args.stream, config)


if __name__ == "__main__":
  main()
