"""PyTorch worker of benchmarks/peers/peer_glow.py: normflows' multi-scale Glow.

Runs under the Python of the PyTorch venv (benchmarks/peers/requirements-peers.txt) and never
imports TensorFlow. It trains on the stream exported by `peer_protocol.export_stream` with a
`peer_protocol.Recipe`, answers the parent's requests with the protocol of
`benchmarks/peers/peer_worker.py` (`procs.serve`: train / time / evaluate / reconstruction /
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

  <torch venv>/bin/python benchmarks/peers/normflows_worker.py --stream DIR --config JSON
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import normflows as nf  # pylint: disable=g-import-not-at-top
import numpy as np
import torch

from benchmarks.common import procs
from benchmarks.peers import peer_protocol

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


class Worker:
  """normflows' Glow, its optimizer and the stream; the request handlers are its methods.

  The handlers answer what `benchmarks/peers/peer_worker.py`'s do (same names and answers), so the
  parent treats every peer alike.
  """

  def __init__(self, stream_dir, config):
    if config["threads"]:
      torch.set_num_threads(config["threads"])
    torch.manual_seed(config["seed"])
    self.config = config
    self.recipe = peer_protocol.Recipe(**config["recipe"])
    self.meta = peer_protocol.read_meta(stream_dir)
    self.image_shape = tuple(self.meta["image_shape"])
    self.reader = peer_protocol.StreamReader(stream_dir)
    self.test = peer_protocol.load_test(stream_dir)
    self.model = build_glow(self.image_shape, config["levels"], config["steps_per_level"],
                            config["width"])
    self.parameters = [p for p in self.model.parameters() if p.requires_grad]
    optimizer_class = (torch.optim.Adam if self.recipe.optimizer == "adam"
                       else torch.optim.Adamax)
    extra = {"eps": ADAM_EPSILON} if self.recipe.optimizer == "adam" else {}
    self.optimizer = optimizer_class(self.parameters, lr=self.recipe.learning_rate,
                                     weight_decay=self.recipe.weight_decay, **extra)
    self.step = 0
    self.average = None
    self.averaged_in = False
    fixed = to_torch(self.test[:config["log_prob_batch"]])
    n = config["sample_count"]
    self.timed_calls = {"log_prob": lambda: self.model.log_prob(fixed, None),
                        "sample": lambda: self.model.sample(n)[0],
                        "sample_and_log_prob": lambda: self.model.sample(n)[1]}

  def ready(self):
    total, used = parameter_counts(self.model)
    return {"parameters": total, "parameters_used": used, "image_shape": list(self.image_shape),
            "num_bins": self.meta["num_bins"], "rss_after_setup_mb": procs.current_rss_mb(),
            "torch": torch.__version__, "normflows": nf.__version__,
            "threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "model": (f"normflows MultiscaleFlow of {self.config['levels']} levels x "
                      f"{self.config['steps_per_level']} GlowBlock(scale_map='sigmoid', "
                      "split_mode='channel', use_lu=True) + Squeeze, GlowBase per level")}

  def handlers(self):
    return {"train": self.train, "time": self.time, "evaluate": self.evaluate,
            "reconstruction": self.reconstruction, "samples": self.samples,
            "peak_rss": lambda: {"peak_rss_mb": procs.peak_rss_mb()}}

  # --- training ---------------------------------------------------------------------------
  def rate(self, step):
    """The recipe's learning rate of update `step` (`peer_protocol.learning_rate`)."""
    recipe = self.recipe
    return peer_protocol.learning_rate(step, recipe.learning_rate, recipe.lr_warmup,
                                       recipe.lr_schedule, self.config["steps"],
                                       recipe.lr_min_ratio)

  def train_step(self, x):
    """One update; returns (loss, gradient norm before clipping, skipped)."""
    loss = -torch.mean(self.model.log_prob(x, None))
    self.optimizer.zero_grad(set_to_none=True)
    if self.recipe.skip_nonfinite and not torch.isfinite(loss):
      return loss.item(), float("nan"), True  # normflows' example skips such a step
    loss.backward()
    if self.recipe.grad_clip_norm is not None:
      norm = torch.nn.utils.clip_grad_norm_(self.parameters, self.recipe.grad_clip_norm)
    else:
      norm = torch.nn.utils.get_total_norm([p.grad for p in self.parameters
                                            if p.grad is not None])
    for group in self.optimizer.param_groups:
      group["lr"] = self.rate(self.step)
    self.optimizer.step()
    if self.average is not None:
      self.average.update()
    return loss.item(), norm.item(), False

  def start(self, x):
    """Data-dependent ActNorm initialisation on the first batch, then the weight average."""
    with torch.no_grad():
      self.model.log_prob(x, None)
    if self.recipe.ema_decay > 0:
      self.average = WeightAverage(self.parameters, self.recipe.ema_decay)

  def train(self, n):
    if self.averaged_in:
      raise RuntimeError("train: the averaged weights were already swapped in for evaluation")
    losses, norms, rates, skipped, checksums = [], [], [], 0, []
    start = time.perf_counter()
    for i in range(n):
      batch = self.reader.batch(self.step)
      x = to_torch(batch)
      if self.step == 0:
        self.start(x)
      rates.append(self.rate(self.step))
      loss, norm, skip = self.train_step(x)
      losses.append(loss)
      norms.append(norm)
      skipped += skip
      if i in (0, n - 1):
        checksums.append([self.step, peer_protocol.checksum(batch)])
      self.step += 1
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "losses": losses, "grad_norms": norms, "skipped": skipped,
            "checksums": checksums, "learning_rates": rates}

  def use_average(self):
    """After training: evaluate the averaged weights when the recipe keeps an average."""
    if self.average is not None and not self.averaged_in:
      self.average.swap()
    self.averaged_in = True

  # --- measurements -----------------------------------------------------------------------
  @torch.no_grad()
  def time(self, what, repeats):
    self.use_average()
    fn = self.timed_calls[what]
    fn()  # warm up
    times = []
    for _ in range(repeats):
      start = time.perf_counter()
      out = fn()
      times.append(time.perf_counter() - start)
    return {"seconds": times, "finite": float(np.mean(np.isfinite(out.numpy())))}

  def batches(self, images):
    for i in range(0, len(images), self.config["eval_batch"]):
      yield to_torch(images[i:i + self.config["eval_batch"]])

  @torch.no_grad()
  def bits_per_dim(self):
    start = time.perf_counter()
    log_probs = [self.model.log_prob(x, None).double().numpy() for x in self.batches(self.test)]
    bpd = peer_protocol.bits_per_dim(np.concatenate(log_probs), int(np.prod(self.image_shape)),
                                     self.meta["num_bins"])
    first = bpd[:peer_protocol.TEST_FIRST_IMAGES]
    return {"bpd_all": float(np.mean(bpd)), "n_all": len(bpd), "bpd_first": float(np.mean(first)),
            "n_first": len(first), "finite": float(np.mean(np.isfinite(bpd))),
            "seconds": time.perf_counter() - start}

  def evaluate(self):
    """Test bits/dim (with the averaged weights, if any; then also with the raw ones)."""
    self.use_average()
    answer = dict(self.bits_per_dim(), averaged=self.average is not None,
                  test_checksum=peer_protocol.checksum(self.test))
    if self.average is not None:
      self.average.swap()
      answer["raw_weights"] = self.bits_per_dim()
      self.average.swap()
    return answer

  @torch.no_grad()
  def sample(self, n, temperature, seed):
    """n samples NHWC (float32 numpy), latents at `temperature`, seeded by `seed`."""
    torch.manual_seed(seed)
    x, _ = self.model.sample(n, temperature=float(temperature))
    return np.transpose(x.numpy(), (0, 2, 3, 1)).astype(np.float32)

  @torch.no_grad()
  def max_errors(self, images):
    """Per-image max |forward(inverse(x)) - x| (NaN where the round trip is not finite)."""
    errors = []
    for x in self.batches(images):
      z, _ = self.model.inverse_and_log_det(x)
      back, _ = self.model.forward_and_log_det(z)
      error = torch.amax(torch.abs(back - x), dim=(1, 2, 3))
      finite = torch.isfinite(back).all(dim=(1, 2, 3))
      errors.append(torch.where(finite, error, torch.full_like(error, float("nan"))).numpy())
    return np.concatenate(errors) if errors else np.zeros(0)

  def reconstruction(self, samples):
    self.use_average()
    batch = self.config["eval_batch"]
    drawn = np.concatenate([self.sample(min(batch, samples - i), 1.0, 1000 + i)
                            for i in range(0, samples, batch)])
    return peer_protocol.round_trip_summary(self.max_errors(self.test), drawn, self.max_errors)

  def samples(self, n, temperature, seed, path):
    self.use_average()
    x = self.sample(n, temperature, seed)
    np.save(path, x)
    return {"path": path, "finite": float(np.mean(np.all(np.isfinite(x), axis=(1, 2, 3))))}


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
  worker = Worker(args.stream, config)
  procs.serve(worker.ready(), worker.handlers())
  worker.reader.close()


if __name__ == "__main__":
  main()
