"""SavedModel export: self-contained signatures, bad inputs, atomic writes (issue 5)."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import lcflow_tf as lf
from lcflow_tf import export

NUM_BINS = 17


@pytest.fixture(scope="module")
def flow_and_export(tmp_path_factory):
  flow = lf.build_flow((8, 8, 1), architecture="glow", levels=2, steps_per_level=2,
                       hidden_channels=8, split="lc")
  rng = np.random.default_rng(0)
  images = rng.integers(0, NUM_BINS, size=(6, 8, 8, 1)).astype(np.uint8)
  flow.initialize((images + rng.random(images.shape)) / NUM_BINS)
  _, sums = flow.log_prob_and_lc_batch((images + 0.5) / NUM_BINS)
  flow.lc_statistics.update(sums)
  flow.fix_split()  # non-identity permutations must travel with the export
  for v in flow.trainable_variables:  # non-trivial weights everywhere
    v.assign(v + 0.05 * rng.standard_normal(tuple(v.shape)).astype(np.float32))
  path = str(tmp_path_factory.mktemp("export") / "model")
  export.export_saved_model(flow, path, NUM_BINS)
  return flow, path, images


def test_standalone_load_matches_library(flow_and_export, tmp_path):
  flow, path, images = flow_and_export
  latents = np.random.default_rng(1).standard_normal((3, 8, 8, 1)).astype(np.float32) * 0.7
  np.save(tmp_path / "images.npy", images)
  np.save(tmp_path / "latents.npy", latents)
  script = f"""
import sys, json
sys.path = [p for p in sys.path if 'lcflow' not in p and p not in ('', '.', {os.getcwd()!r})]
try:
  import lcflow_tf
  raise SystemExit('lcflow_tf must not be importable here')
except ImportError:
  pass
import numpy as np, tensorflow as tf
m = tf.saved_model.load({path!r})
images = np.load({str(tmp_path / 'images.npy')!r})
latents = np.load({str(tmp_path / 'latents.npy')!r})
out = m.signatures['log_prob'](images=tf.constant(images))
default = m.signatures['serving_default'](images=tf.constant(images))
dec = m.signatures['decode'](latent=tf.constant(latents))['images'].numpy()
enc = m.signatures['encode'](images=tf.constant(images))['latent'].numpy()
smp = m.signatures['sample'](num=tf.constant(4), temperature=tf.constant(0.7),
                             seed=tf.constant(5, tf.int64))['images'].numpy()
np.savez({str(tmp_path / 'out.npz')!r}, log_prob=out['log_prob'].numpy(),
         bpd=out['bits_per_dim'].numpy(), default=default['log_prob'].numpy(), dec=dec, enc=enc,
         smp=smp)
"""
  env = dict(os.environ, PYTHONPATH="", TF_CPP_MIN_LOG_LEVEL="2")
  proc = subprocess.run([sys.executable, "-c", script], cwd=str(tmp_path), env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = np.load(tmp_path / "out.npz")
  x = (images.astype(np.float32) + 0.5) / NUM_BINS
  expected = flow.log_prob(x).numpy()
  np.testing.assert_allclose(out["log_prob"], expected, rtol=1e-5)
  np.testing.assert_array_equal(out["default"], out["log_prob"])
  dims = 64
  np.testing.assert_allclose(
      out["bpd"], -(expected - dims * np.log(NUM_BINS)) / (dims * np.log(2)), rtol=1e-5)
  decoded = np.clip(np.floor(flow.decode(latents).numpy() * NUM_BINS), 0, NUM_BINS - 1)
  np.testing.assert_array_equal(out["dec"], decoded.astype(np.uint8))
  np.testing.assert_allclose(out["enc"], flow.encode(x).numpy(), rtol=1e-5, atol=1e-5)
  assert out["smp"].shape == (4, 8, 8, 1) and out["smp"].dtype == np.uint8
  assert out["smp"].max() < NUM_BINS


def test_signature_specs(flow_and_export):
  _, path, _ = flow_and_export
  m = tf.saved_model.load(path)
  assert set(export.SIGNATURES) <= set(m.signatures)
  _, kwargs = m.signatures["log_prob"].structured_input_signature
  assert kwargs["images"].dtype == tf.uint8 and kwargs["images"].shape.as_list() == [None, 8, 8, 1]
  assert set(m.signatures["log_prob"].structured_outputs) == {"log_prob", "bits_per_dim"}
  _, kwargs = m.signatures["sample"].structured_input_signature
  assert {k: v.dtype for k, v in kwargs.items()} == {
      "num": tf.int32, "temperature": tf.float32, "seed": tf.int64}
  _, kwargs = m.signatures["decode"].structured_input_signature
  assert kwargs["latent"].dtype == tf.float32
  # Same seed, same samples; the export carries its own state.
  a = m.signatures["sample"](num=tf.constant(2), temperature=tf.constant(1.0),
                             seed=tf.constant(3, tf.int64))["images"]
  b = m.signatures["sample"](num=tf.constant(2), temperature=tf.constant(1.0),
                             seed=tf.constant(3, tf.int64))["images"]
  np.testing.assert_array_equal(a, b)


BAD_CALLS = [
    ("log_prob", dict(images=np.zeros([1, 8, 8, 3], np.uint8)), "must have shape"),
    ("log_prob", dict(images=np.zeros([1, 4, 4, 1], np.uint8)), "must have shape"),
    ("log_prob", dict(images=np.full([1, 8, 8, 1], 20, np.uint8)), r"integers in \[0, 17\)"),
    ("log_prob", dict(images=np.zeros([1, 8, 8, 1], np.float32)), "uint8|dtype"),
    ("encode", dict(images=np.zeros([2, 8, 8, 2], np.uint8)), "must have shape"),
    ("decode", dict(latent=np.zeros([1, 8, 8, 2], np.float32)), "must have shape"),
    ("sample", dict(num=np.int32(-1), temperature=np.float32(1), seed=np.int64(0)),
     "num must be >= 0"),
    ("sample", dict(num=np.int32(1), temperature=np.float32(-1), seed=np.int64(0)),
     "temperature must be >= 0"),
]


@pytest.mark.parametrize("signature,kwargs,message", BAD_CALLS)
def test_bad_inputs_to_signatures(flow_and_export, signature, kwargs, message):
  _, path, _ = flow_and_export
  m = tf.saved_model.load(path)
  with pytest.raises((tf.errors.InvalidArgumentError, TypeError, ValueError), match=message):
    m.signatures[signature](**{k: tf.constant(v) for k, v in kwargs.items()})


def test_existing_export_dir_is_refused_then_overwritten(flow_and_export, tmp_path):
  flow, _, _ = flow_and_export
  target = tmp_path / "model"
  target.mkdir()
  (target / "keep.txt").write_text("old")
  with pytest.raises(ValueError, match="already exists.*overwrite"):
    export.export_saved_model(flow, str(target), NUM_BINS)
  assert (target / "keep.txt").read_text() == "old"
  export.export_saved_model(flow, str(target), NUM_BINS, overwrite=True)
  assert (target / "saved_model.pb").exists() and not (target / "keep.txt").exists()
  assert sorted(os.listdir(tmp_path)) == ["model"]


@pytest.mark.parametrize("existing", [False, True])
def test_failure_mid_write_leaves_destination_untouched(flow_and_export, tmp_path, monkeypatch,
                                                        existing):
  flow, _, _ = flow_and_export
  target = tmp_path / "model"
  if existing:
    target.mkdir()
    (target / "keep.txt").write_text("old")

  def crash(obj, path, signatures=None):
    del obj, signatures
    with open(os.path.join(path, "saved_model.pb"), "wb") as f:
      f.write(b"half")
    raise KeyboardInterrupt("simulated kill during write")

  monkeypatch.setattr(tf.saved_model, "save", crash)
  with pytest.raises(KeyboardInterrupt):
    export.export_saved_model(flow, str(target), NUM_BINS, overwrite=True)
  if existing:
    assert sorted(os.listdir(target)) == ["keep.txt"]
  else:
    assert not target.exists()
  assert sorted(os.listdir(tmp_path)) == (["model"] if existing else [])


def test_bad_num_bins(flow_and_export, tmp_path):
  flow, _, _ = flow_and_export
  with pytest.raises(ValueError, match="num_bins must be an int >= 2"):
    export.export_saved_model(flow, str(tmp_path / "m"), 1)
