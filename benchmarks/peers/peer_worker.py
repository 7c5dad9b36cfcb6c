"""TensorFlow worker of benchmarks/peers/peer_glow.py: our Glow or TFP's, on the exported stream.

Builds one model (`peer_models.build`), trains it with a `peer_protocol.Recipe` on the batches
that `peer_protocol.export_stream` wrote (batch i at step i, as the PyTorch worker does), and
answers the parent's requests over `procs.serve`:

  train(n)                      n more steps: seconds, losses, gradient norms, learning rates,
                                checksums [step, exact sum] of the first and last batch
  time(what, repeats)           compiled log_prob (test batch) / sample / sample_and_log_prob
  evaluate()                    test bits/dim on the exported test set (averaged weights and,
                                when the recipe averages, also the raw ones)
  reconstruction(samples)       max |decode(encode(x)) - x| on the test set and on samples
  samples(n, temperature, seed, path)   writes n samples (float32 .npy) for sample quality
  peak_rss()                    the process's peak resident memory so far
  profile(timed, traced)        (ours) the training step under the TensorFlow profiler

After training, every request uses the averaged weights when the recipe keeps an average.

  python benchmarks/peers/peer_worker.py --stream DIR --config JSON
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf

from benchmarks.common import procs
from benchmarks.peers import peer_models
from benchmarks.peers import peer_protocol


class Worker:
  """One model, its trainer and the stream; the request handlers are its methods."""

  def __init__(self, stream_dir, config):
    meta = peer_protocol.read_meta(stream_dir)
    self.config = config
    self.image_shape = tuple(meta["image_shape"])
    self.num_bins = meta["num_bins"]
    self.reader = peer_protocol.StreamReader(stream_dir)
    self.test = peer_protocol.load_test(stream_dir)
    self.model = peer_models.build(config["kind"], self.image_shape, config["levels"],
                                   config["steps_per_level"], config["width"], config["seed"],
                                   scale_fn=config.get("scale_fn"))
    self.jit = bool(config.get("jit")) and config["kind"] == "ours"
    self.trainer = peer_models.Trainer(self.model, peer_protocol.Recipe(**config["recipe"]),
                                       config["steps"], jit=self.jit)
    self.step = 0
    self.weights = "raw"  # which weights the variables hold: "raw" or "average"
    self.raw = None
    fixed = tf.constant(self.test[:config["log_prob_batch"]])
    n = config["sample_count"]
    self.timed_calls = {
        "log_prob": tf.function(lambda: self.model.log_prob(fixed), jit_compile=self.jit),
        "sample": tf.function(lambda: self.model.sample(n, 1.0, 1), jit_compile=self.jit),
        "sample_and_log_prob": tf.function(lambda: self.model.sample_and_log_prob(n, 1)[1],
                                           jit_compile=self.jit)}

  def ready(self):
    return {"parameters": peer_models.num_parameters(self.model.variables),
            "image_shape": list(self.image_shape), "num_bins": self.num_bins,
            "rss_after_setup_mb": procs.current_rss_mb(), "tensorflow": tf.__version__,
            "model": self.model.description}

  # --- training ---------------------------------------------------------------------------
  def train(self, n):
    if self.weights != "raw":
      raise RuntimeError("train: the averaged weights were already swapped in for evaluation")
    losses, norms, rates, checksums = [], [], [], []
    start = time.perf_counter()
    for i in range(n):
      batch = self.reader.batch(self.step)
      x = tf.constant(batch)
      if self.step == 0:
        self.trainer.start(x)
      rates.append(self.trainer.learning_rate())
      loss, norm = self.trainer.step(x)
      losses.append(loss)
      norms.append(norm)
      if i in (0, n - 1):
        checksums.append([self.step, peer_protocol.checksum(batch)])
      self.step += 1
    losses = [float(l) for l in losses]  # waits for the last step
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "losses": losses, "grad_norms": [float(g) for g in norms],
            "skipped": 0, "checksums": checksums, "learning_rates": rates}

  def use(self, weights):
    """Puts the averaged ("average") or the last ("raw") weights into the variables."""
    average = self.trainer.average
    if average is None or weights == self.weights:
      return
    if self.raw is None:
      self.raw = [v.numpy() for v in self.model.variables]
    if weights == "average":
      average.copy_to_variables()
    else:
      for v, value in zip(self.model.variables, self.raw):
        v.assign(value)
    self.weights = weights

  # --- measurements -----------------------------------------------------------------------
  def time(self, what, repeats):
    self.use("average")
    fn = self.timed_calls[what]
    fn()  # trace / warm up
    seconds = []
    for _ in range(repeats):
      start = time.perf_counter()
      out = fn()
      out = out.numpy()
      seconds.append(time.perf_counter() - start)
    return {"seconds": seconds, "finite": float(np.mean(np.isfinite(out)))}

  def _padded(self, fn, x):
    """fn on x padded to one static batch shape (TFP's Glow fails on an unknown batch size)."""
    n, batch = x.shape[0], self.config["eval_batch"]
    filler = tf.fill([batch - n] + list(self.image_shape), 0.5)
    return fn(tf.concat([x, filler], axis=0)).numpy()[:n]

  def _batches(self, images):
    batch = self.config["eval_batch"]
    for i in range(0, len(images), batch):
      yield tf.constant(images[i:i + batch])

  def _bits_per_dim(self):
    log_prob = tf.function(self.model.log_prob, jit_compile=self.jit)
    start = time.perf_counter()
    lp = np.concatenate([self._padded(log_prob, x) for x in self._batches(self.test)])
    bpd = peer_protocol.bits_per_dim(lp, float(np.prod(self.image_shape)), self.num_bins)
    first = bpd[:peer_protocol.TEST_FIRST_IMAGES]
    return {"bpd_all": float(np.mean(bpd)), "n_all": len(bpd), "bpd_first": float(np.mean(first)),
            "n_first": len(first), "finite": float(np.mean(np.isfinite(bpd))),
            "seconds": time.perf_counter() - start}

  def evaluate(self):
    self.use("average")
    answer = dict(self._bits_per_dim(), averaged=self.trainer.average is not None,
                  test_checksum=peer_protocol.checksum(self.test))
    if self.trainer.average is not None:
      self.use("raw")
      answer["raw_weights"] = self._bits_per_dim()
      self.use("average")
    return answer

  def reconstruction(self, samples):
    """max |decode(encode(x)) - x| (float32) over the test set and `samples` samples (T=1)."""
    self.use("average")
    model = self.model

    def max_error(x):  # NaN for an image whose round trip is not finite (max would skip it)
      # tf.identity: a fresh tensor, so TFP's bijector cache cannot hand back x itself
      back = model.decode(tf.identity(model.encode(x)))
      error = tf.reduce_max(tf.abs(back - x), axis=[1, 2, 3])
      finite = tf.reduce_all(tf.math.is_finite(back), axis=[1, 2, 3])
      return tf.where(finite, error, tf.fill(tf.shape(error), np.float32("nan")))

    round_trip = tf.function(max_error, jit_compile=self.jit)
    test = np.concatenate([self._padded(round_trip, x) for x in self._batches(self.test)])
    drawn = np.concatenate([model.sample(min(self.config["eval_batch"], samples - i), 1.0,
                                         1000 + i).numpy()
                            for i in range(0, samples, self.config["eval_batch"])])
    return peer_protocol.round_trip_summary(test, drawn, lambda x: np.concatenate(
        [self._padded(round_trip, b) for b in self._batches(x)]) if len(x) else np.zeros(0))

  def samples(self, n, temperature, seed, path):
    """Writes n samples at `temperature` (latents N(0, T^2), seed `seed`) to `path` (.npy)."""
    self.use("average")
    x = self.model.sample(n, float(temperature), seed).numpy().astype(np.float32)
    np.save(path, x)
    return {"path": path, "finite": float(np.mean(np.all(np.isfinite(x), axis=(1, 2, 3))))}

  def profile(self, timed_steps, traced_steps):
    """Profiles our training step (`profile_step.profile`), continuing the stream."""
    from benchmarks.speed import profile_step  # pylint: disable=g-import-not-at-top
    if self.config["kind"] != "ours":
      raise ValueError("profile: only our model's step is profiled")
    step = self.trainer.step
    if self.jit:  # the profile reads op names, which XLA clusters hide
      step = tf.function(self.trainer._step)  # pylint: disable=protected-access
    self.use("raw")
    answer = profile_step.profile(step, self.model.bijector, self._profile_batches(),
                                  timed_steps, traced_steps)
    return dict(answer, image_shape=list(self.image_shape))

  def _profile_batches(self):
    i = 0
    while True:
      yield tf.constant(self.reader.batch(i % len(self.reader)))
      i += 1


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--stream", required=True, help="directory written by export_stream")
  parser.add_argument("--config", required=True, help="JSON settings from peer_glow.py")
  args = parser.parse_args()
  worker = Worker(args.stream, json.loads(args.config))
  procs.serve(worker.ready(), {
      "train": worker.train, "time": worker.time, "evaluate": worker.evaluate,
      "reconstruction": worker.reconstruction, "samples": worker.samples,
      "peak_rss": lambda: {"peak_rss_mb": procs.peak_rss_mb()}, "profile": worker.profile})


if __name__ == "__main__":
  main()
