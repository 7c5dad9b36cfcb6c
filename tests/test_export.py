"""SavedModel export: every loader runs every signature, bad inputs, atomic writes.

Loaders (issues 5 and 16): `tf.saved_model.load` (TF2, in a process without lcflow_tf), the
TF1 session loader `tf.compat.v1.saved_model.loader.load` (what TensorFlow Serving's model
server does: one Session, the SavedModel's restore op, the SignatureDef's tensors by name; run
in-process inside a `tf.Graph`) and the `saved_model_cli run` client that ships with
TensorFlow. One subprocess runs the TF2 loads and calls saved_model_cli's own entry point
(`tensorflow.python.tools.saved_model_cli.main`, which the `saved_model_cli` executable is a
three-line wrapper of) once per signature and bad input: flag parsing, `run`, a fresh Graph
and Session per call, outputs written with `--outdir`. Spawning one TensorFlow process per
call would cost ~7 s each. A second subprocess runs `export.py --upgrade` concurrently.

Compatibility: tests/data/main_8c09397 holds a checkpoint and an export written by main
before issue 16 (see its README.md).
"""

import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import tensorflow as tf

import lcflow_tf as lf
from lcflow_tf import evaluation
from lcflow_tf import export
from lcflow_tf import flows

NUM_BINS = 17
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN_DATA = os.path.join(REPO, "tests", "data", "main_8c09397")
SAMPLE_ARGS = dict(num=np.int32(4), temperature=np.float32(0.7), seed=np.int64(5))


@pytest.fixture(scope="module")
def flow_and_export(tmp_path_factory):
  """A perturbed LC Glow exported in TensorFlow Serving's layout BASE/1; (flow, path, images)."""
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
  base = tmp_path_factory.mktemp("export") / "models"
  path = export.export_saved_model(flow, str(base), NUM_BINS, version=1)
  assert path == str(base / "1") and os.listdir(base) == ["1"]
  umask = os.umask(0)
  os.umask(umask)
  assert os.stat(path).st_mode & 0o777 == 0o777 & ~umask  # like mkdir, not mkdtemp's 0700
  return flow, path, images


def test_plain_variables_are_every_variable_of_the_bijector(flow_and_export):
  flow = flow_and_export[0]
  plain = export.plain_variables(flow)
  assert all(isinstance(v, tf.Variable) for v in plain)
  refs = {v.ref() for v in plain}
  assert len(refs) == len(plain)
  trainable = [v if isinstance(v, tf.Variable) else v.value for v in flow.trainable_variables]
  keras = [v for v in flow.trainable_variables if not isinstance(v, tf.Variable)]
  assert len(keras) == 4 * 3 * 2 + 1 * 2  # 4 couplings x 3 convs, 1 prior conv; kernel, bias
  state = ([j.permutation.indices for j in flow.junctions] +
           [a.initialized for a in flow.actnorms])
  assert {v.ref() for v in trainable + state} <= refs
  assert not {v.ref() for v in flow.lc_statistics.variables} & refs  # not part of the model


def good_calls(images, latents):
  """{signature: inputs} of one valid call of every signature."""
  return {"log_prob": {"images": images}, "serving_default": {"images": images},
          "encode": {"images": images}, "decode": {"latent": latents}, "sample": SAMPLE_ARGS}


def library_outputs(flow, images, latents):
  """What every loader must return for `good_calls`, computed by the library."""
  def to_images(x):
    return np.clip(np.floor(np.asarray(x) * NUM_BINS), 0, NUM_BINS - 1).astype(np.uint8)
  x = (images.astype(np.float32) + 0.5) / NUM_BINS
  log_prob = flow.log_prob(x).numpy()
  scores = {"log_prob": log_prob,
            "bits_per_dim": flows.log_prob_to_bits_per_dim(log_prob, (8, 8, 1), NUM_BINS)}
  return {"log_prob": scores, "serving_default": scores,
          "encode": {"latent": flow.encode(x).numpy()},
          "decode": {"images": to_images(flow.decode(latents))},
          "sample": {"images": to_images(flow.sample(4, 0.7, seed=5))}}


def session_run(path, calls):
  """Runs `calls` [(signature, {input: value})] through the TF1 session loader.

  As TensorFlow Serving does: one Session, `loader.load` (which runs the SavedModel's restore
  op), then each signature's output tensors fetched by name with its inputs fed by name, as
  arrays of the SignatureDef's dtypes (values may be nested lists, as from JSON; a value
  that is not a dict feeds the signature's only input). Returns per call the {output: array}
  or the exception raised.
  """
  results = []
  with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as sess:
    meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], path)
    for name, feeds in calls:
      signature = meta.signature_def[name]
      inputs = signature.inputs
      if not isinstance(feeds, dict):
        (only,) = inputs
        feeds = {only: feeds}
      try:
        results.append(sess.run(
            {k: t.name for k, t in signature.outputs.items()},
            {inputs[k].name: np.asarray(v, tf.dtypes.as_dtype(inputs[k].dtype).as_numpy_dtype)
             for k, v in feeds.items()}))
      except (tf.errors.OpError, ValueError) as e:
        results.append(e)
  return results


def assert_outputs_match(got, expected, what, rtol=1e-6):
  """Floats to `rtol` (latents also to 1e-6 absolute); uint8 images equal, up to one level on
  at most 2% of the pixels when one side is the eagerly computed library (float rounding at
  a bin edge can flip the floor)."""
  assert set(got) == set(expected), what
  for key, want in expected.items():
    have = np.asarray(got[key])
    assert have.shape == want.shape and have.dtype == want.dtype, (what, key)
    if want.dtype == np.uint8:
      diff = np.abs(have.astype(int) - want.astype(int))
      assert diff.max() <= 1 and np.mean(diff > 0) <= 0.02, (what, key, diff.max())
    else:
      np.testing.assert_allclose(have, want, rtol=rtol, atol=1e-6 if key == "latent" else 0,
                                 err_msg=f"{what}: {key}")


def keep_lcflow_tf_out(repo):
  """Makes the calling process unable to import lcflow_tf, and changes nothing else it imports.

  Drops the checkout from `sys.path` (exactly `repo`, '' and '.') and puts a finder first on
  `sys.meta_path` that refuses `lcflow_tf` and its submodules, so that neither the checkout
  nor an installed copy (a site-packages holding lcflow_tf, an editable install's finder or
  .pth entry) is imported. Every other entry stays, even one whose path names lcflow_tf: a
  checkout cloned as `lcflow_tf` keeps its venv's site-packages, with TensorFlow, under that
  name. The driver's first lines are this function's source, so it imports what it needs.

  Args:
    repo: the checkout's root directory.
  """
  import importlib.abc  # pylint: disable=g-import-not-at-top,redefined-outer-name,reimported
  import os  # pylint: disable=g-import-not-at-top,redefined-outer-name,reimported
  import sys  # pylint: disable=g-import-not-at-top,redefined-outer-name,reimported

  class RefuseLcflowTf(importlib.abc.MetaPathFinder):

    def find_spec(self, fullname, path=None, target=None):
      del path, target  # unused
      if fullname.partition(".")[0] == "lcflow_tf":
        raise ModuleNotFoundError(f"No module named {fullname!r} (refused: this process runs "
                                  "without lcflow_tf)", name=fullname)
      return None

  root = os.path.realpath(repo)
  sys.path[:] = [p for p in sys.path if p not in ("", ".") and os.path.realpath(p) != root]
  sys.meta_path.insert(0, RefuseLcflowTf())


def driver_source():
  """The driver's code for `python -c`: `keep_lcflow_tf_out`, then `_DRIVER`."""
  return inspect.getsource(keep_lcflow_tf_out) + _DRIVER.format(repo=REPO)


# One process without lcflow_tf: tf.saved_model.load of every export in spec["tf2"], then
# saved_model_cli's entry point once per spec["cli"] call (results: "ok" or the exception).
# An import of lcflow_tf by either fails (`keep_lcflow_tf_out`), and with it the driver.
_DRIVER = """
import json, sys
spec_path = sys.argv[1]
keep_lcflow_tf_out({repo!r})
try:
  import lcflow_tf
  raise SystemExit('lcflow_tf must not be importable here')
except ImportError:
  pass
import numpy as np, tensorflow as tf
from tensorflow.python.tools import saved_model_cli
with open(spec_path) as f:
  spec = json.load(f)
inputs = np.load(spec['inputs'])
images = dict(images=inputs['images'])
calls = {{'log_prob': images, 'serving_default': images, 'encode': images,
         'decode': dict(latent=inputs['latents']),
         'sample': dict(num=np.int32(4), temperature=np.float32(0.7), seed=np.int64(5))}}
for name, (path, out) in spec['tf2'].items():
  model = tf.saved_model.load(path)
  np.savez(out, **{{f'{{sig}}/{{key}}': value.numpy() for sig, feeds in calls.items()
                  for key, value in model.signatures[sig](
                      **{{k: tf.constant(v) for k, v in feeds.items()}}).items()}})
results = {{}}
for call in spec['cli']:
  sys.argv = ['saved_model_cli', 'run', '--dir=' + call['dir'], '--tag_set=serve',
              '--signature_def=' + call['signature'], '--inputs=' + call['inputs'],
              '--input_exprs=' + call['input_exprs'], '--outdir=' + call['outdir'], '--overwrite']
  try:
    saved_model_cli.main()
    results[call['id']] = 'ok'
  except SystemExit as e:  # app.run ends a successful command with sys.exit(None)
    results[call['id']] = 'ok' if not e.code else f'SystemExit: {{e.code}}'
  except Exception as e:  # pylint: disable=broad-except
    results[call['id']] = f'{{type(e).__name__}}: {{e}}'
with open(spec['results'], 'w') as f:
  json.dump(results, f)
"""

# saved_model_cli calls: (id, signature, --inputs, --input_exprs). {d}: the data directory.
CLI_CALLS = [
    ("log_prob", "log_prob", "images={d}/images.npy", ""),
    ("serving_default", "serving_default", "images={d}/images.npy", ""),
    ("encode", "encode", "images={d}/images.npy", ""),
    ("decode", "decode", "latent={d}/latents.npy", ""),
    ("sample", "sample", "", "num=4;temperature=0.7;seed=5"),  # the serving guide's line
    ("bad-values", "log_prob", "images={d}/too_large.npy", ""),
    ("bad-shape", "encode", "images={d}/three_channels.npy", ""),
]


@pytest.fixture(scope="module")
def old_export(tmp_path_factory):
  """main's export (tests/data/main_8c09397/export.tar.gz), unpacked; and its expected.npz."""
  root = tmp_path_factory.mktemp("main_8c09397")
  with tarfile.open(os.path.join(MAIN_DATA, "export.tar.gz")) as tar:
    tar.extractall(root, filter="data")
  return str(root / "export"), dict(np.load(os.path.join(MAIN_DATA, "expected.npz")))


@pytest.fixture(scope="module")
def processes(flow_and_export, old_export, tmp_path_factory):
  """Runs two subprocesses at once and waits for both.

  1. The driver (no lcflow_tf): TF2 outputs of the fresh and of main's export, and
     saved_model_cli on the fresh export for `CLI_CALLS`.
  2. `export.py --upgrade=main's export --export_dir=BASE --version=3`, BASE holding version 7.
  Returns a dict of their paths and results.
  """
  _, path, images = flow_and_export
  old_path, _ = old_export
  d = tmp_path_factory.mktemp("loaders")
  latents = np.random.default_rng(1).standard_normal((3, 8, 8, 1)).astype(np.float32) * 0.7
  np.savez(d / "inputs.npz", images=images[:3], latents=latents)
  np.save(d / "images.npy", images[:3])
  np.save(d / "latents.npy", latents)
  too_large = images[:2].copy()
  too_large[1, 4, 4, 0] = NUM_BINS
  np.save(d / "too_large.npy", too_large)
  np.save(d / "three_channels.npy", np.zeros((1, 8, 8, 3), np.uint8))
  spec = {"inputs": str(d / "inputs.npz"), "results": str(d / "cli.json"),
          "tf2": {"fresh": [path, str(d / "tf2_fresh.npz")],
                  "main": [old_path, str(d / "tf2_main.npz")]},
          "cli": [dict(id=i, dir=path, signature=s, inputs=a.format(d=d), input_exprs=e,
                       outdir=str(d / "cli" / i)) for i, s, a, e in CLI_CALLS]}
  (d / "spec.json").write_text(json.dumps(spec))
  base = d / "served"
  (base / "7").mkdir(parents=True)
  (base / "7" / "keep.txt").write_text("another version")
  env = {**os.environ, "PYTHONPATH": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
  driver = subprocess.Popen(
      [sys.executable, "-c", driver_source(), str(d / "spec.json")], cwd=str(d),
      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  upgrade = subprocess.Popen(
      [sys.executable, os.path.join(REPO, "export.py"), f"--upgrade={old_path}",
       f"--export_dir={base}", "--version=3"], cwd=str(d), env={**env, "PYTHONPATH": REPO},
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  driver_out = driver.communicate(timeout=600)
  upgrade_out = upgrade.communicate(timeout=600)
  assert driver.returncode == 0, driver_out[1][-3000:]
  with open(d / "cli.json") as f:
    cli_results = json.load(f)
  return dict(dir=d, latents=latents, cli=cli_results,
              tf2={k: np.load(v[1]) for k, v in spec["tf2"].items()},
              upgrade=(upgrade.returncode, *upgrade_out), served=base)


def test_driver_keeps_lcflow_tf_out_wherever_the_checkout_lives(tmp_path):
  """`keep_lcflow_tf_out` in a process whose checkout is cloned as `lcflow_tf` with its venv
  inside, that also sees an installed lcflow_tf and an editable install's finder: the two
  site-packages stay importable, lcflow_tf does not import from any of the three."""
  checkout = tmp_path / "lcflow_tf"
  venv_site = checkout / ".venv" / "lib" / "python3.11" / "site-packages"
  installed = tmp_path / "dist-packages"
  for package in (checkout / "lcflow_tf", installed / "lcflow_tf"):
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
  venv_site.mkdir(parents=True)
  (venv_site / "stand_in_numpy.py").write_text("")
  (installed / "stand_in_tensorflow.py").write_text("")
  fake_path = ["", str(checkout), str(venv_site), str(installed)]
  editable = str(checkout / "lcflow_tf" / "__init__.py")
  code = inspect.getsource(keep_lcflow_tf_out) + f"""
import importlib.util, json, sys
stdlib = list(sys.path)
sys.path[:0] = {fake_path!r}
class EditableFinder:  # what an editable install's .pth adds to sys.meta_path (here: first)
  @staticmethod
  def find_spec(name, path=None, target=None):
    return importlib.util.spec_from_file_location(name, {editable!r}) if name == "lcflow_tf" \\
        else None
sys.meta_path.insert(0, EditableFinder())
keep_lcflow_tf_out({str(checkout)!r})
import stand_in_numpy, stand_in_tensorflow
try:
  import lcflow_tf
  print(json.dumps(["lcflow_tf imported from", lcflow_tf.__file__]))
except ModuleNotFoundError:
  print(json.dumps([p for p in sys.path if p not in stdlib]))
"""
  # -I -S: no site-packages, .pth files or environment of this venv; the stdlib and the fakes.
  proc = subprocess.run([sys.executable, "-I", "-S", "-c", code], cwd=str(tmp_path),
                        capture_output=True, text=True, timeout=60)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert json.loads(proc.stdout) == [str(venv_site), str(installed)]


def split_outputs(flat):
  """{"sig/key": array} -> {sig: {key: array}}."""
  nested = {}
  for name, value in flat.items():
    sig, key = name.split("/")
    nested.setdefault(sig, {})[key] = value
  return nested


def cli_outputs(processes, call_id):
  outdir = processes["dir"] / "cli" / call_id
  return {f[:-4]: np.load(outdir / f) for f in os.listdir(outdir)}


def bad_calls(images):
  """(signature, inputs, message regex) of invalid calls on session paths."""
  too_large = images[:2].copy()
  too_large[1, 4, 4, 0] = NUM_BINS
  # Python session clients check a fed shape against the signature's input spec before the
  # graph (and so the signature's own shape check) runs.
  def fed_shape(shape):
    return (rf"Cannot feed value of shape \({', '.join(map(str, shape))}\) .* has shape "
            r"'?\(None, 8, 8, 1\)")
  return [("log_prob", {"images": too_large}, r"images must be integers in \[0, 17\) "
           r"\(num_bins=17\)"),
          ("encode", {"images": np.full((1, 8, 8, 1), 255, np.uint8)},
           r"images must be integers in \[0, 17\)"),
          ("sample", dict(SAMPLE_ARGS, num=np.int32(-1)), "num must be >= 0"),
          ("sample", dict(SAMPLE_ARGS, temperature=np.float32(-0.5)), "temperature must be >= 0"),
          ("decode", {"latent": np.zeros((1, 8, 8, 2), np.float32)}, fed_shape((1, 8, 8, 2))),
          ("log_prob", {"images": np.zeros((1, 4, 4, 1), np.uint8)}, fed_shape((1, 4, 4, 1)))]


@pytest.fixture(scope="module")
def fresh_session(flow_and_export, processes):
  """The session loader on the fresh export: good calls by signature, then the bad calls."""
  _, path, images = flow_and_export
  calls = good_calls(images[:3], processes["latents"])
  results = session_run(path, list(calls.items()) +
                        [(s, feeds) for s, feeds, _ in bad_calls(images)])
  return dict(zip(calls, results)), results[len(calls):]


def test_every_loader_runs_every_signature_like_the_library(flow_and_export, processes,
                                                            fresh_session):
  flow, _, images = flow_and_export
  latents = processes["latents"]
  expected = library_outputs(flow, images[:3], latents)
  tf2 = split_outputs(processes["tf2"]["fresh"])
  session = fresh_session[0]
  for name in expected:
    assert processes["cli"][name] == "ok", processes["cli"][name]
    cli = cli_outputs(processes, name)
    assert_outputs_match(tf2[name], expected[name], f"tf.saved_model.load {name}")
    assert_outputs_match(session[name], expected[name], f"session loader {name}")
    assert_outputs_match(cli, expected[name], f"saved_model_cli run {name}")
    for key in expected[name]:  # the loaders agree with each other (the same graph)
      np.testing.assert_allclose(session[name][key], tf2[name][key], rtol=1e-6, atol=0)
      np.testing.assert_allclose(cli[key], tf2[name][key], rtol=1e-6, atol=0)
  assert np.all(session["sample"]["images"] < NUM_BINS)


def test_bad_inputs_give_clear_messages_on_session_paths(flow_and_export, processes,
                                                         fresh_session):
  _, _, images = flow_and_export
  for result, (signature, _, message) in zip(fresh_session[1], bad_calls(images)):
    assert isinstance(result, Exception), (signature, message)
    assert re.search(message, str(result)), str(result)[:500]
  cli = processes["cli"]
  assert cli["bad-values"].startswith("InvalidArgumentError"), cli["bad-values"]
  assert re.search(bad_calls(images)[0][2], cli["bad-values"]), cli["bad-values"]
  assert re.search(r"Cannot feed value of shape \(1, 8, 8, 3\) .* has shape '?\(None, 8, 8, "
                   r"1\)", cli["bad-shape"]), cli["bad-shape"]
  assert not os.path.exists(processes["dir"] / "cli" / "bad-values")  # nothing written


def rest_inputs(body):
  """What TensorFlow Serving feeds for a `:predict` JSON body: {input: value}, or the value of
  a signature's only input."""
  if "inputs" in body:  # columnar: the named inputs (or the only input) as they are
    return body["inputs"]
  rows = body["instances"]  # row format: one entry per example, stacked (batch dimension)
  return {k: [row[k] for row in rows] for k in rows[0]} if isinstance(rows[0], dict) else rows


def test_serving_guide_rest_bodies_fit_the_signatures(flow_and_export):
  flow, path, _ = flow_and_export
  guide = os.path.join(REPO, "docs", "guide", "serving.md")
  with open(guide) as f:
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", f.read(), re.S)
                if "sample_body" in b]
  namespace = {}
  exec(compile(block, guide, "exec"), namespace)  # pylint: disable=exec-used
  names = ("log_prob_body", "log_prob_columnar_body", "sample_body")
  bodies = [json.loads(namespace[n]) for n in names]
  results = session_run(path, [(b["signature_name"], rest_inputs(b)) for b in bodies])
  assert not [r for r in results if isinstance(r, Exception)], results
  row, columnar, sample = results
  x = (namespace["digits"].astype(np.float32) + 0.5) / NUM_BINS
  for result in (row, columnar):
    np.testing.assert_allclose(result["log_prob"], flow.log_prob(x).numpy(), rtol=1e-5)
  assert sample["images"].shape == (4, 8, 8, 1) and sample["images"].dtype == np.uint8


def test_checkpoint_written_by_main_restores(digits, tmp_path):
  run_dir = tmp_path / "run"
  shutil.copytree(os.path.join(MAIN_DATA, "run"), run_dir)
  expected = np.load(os.path.join(MAIN_DATA, "expected.npz"))
  run = evaluation.load_run(str(run_dir), dataset=digits)
  assert run.step == int(expected["step"]) == 6
  x = (expected["images"].astype(np.float32) + 0.5) / NUM_BINS
  np.testing.assert_allclose(run.flow.log_prob(x).numpy(), expected["log_prob"], rtol=1e-6)
  np.testing.assert_allclose(run.flow.encode(x).numpy(), expected["encoded"], rtol=1e-6,
                             atol=1e-6)
  decoded = np.clip(np.floor(run.flow.decode(expected["latent"]).numpy() * NUM_BINS), 0, 16)
  np.testing.assert_array_equal(decoded.astype(np.uint8), expected["decoded"])


def test_main_export_loads_in_tf2_and_upgrade_runs_everywhere(old_export, processes):
  old_path, expected = old_export
  tf2 = split_outputs(processes["tf2"]["main"])  # a process without lcflow_tf
  # The driver fed its own images; compare main's export on the fixture's images in-process.
  model = tf.saved_model.load(old_path)
  out = model.signatures["log_prob"](images=tf.constant(expected["images"]))
  np.testing.assert_allclose(out["log_prob"].numpy(), expected["log_prob"], rtol=1e-6)
  dec = model.signatures["decode"](latent=tf.constant(expected["latent"]))["images"].numpy()
  np.testing.assert_array_equal(dec, expected["decoded"])
  # Before issue 16, the session loader could not run it (the Keras variables are never
  # restored); export.py --upgrade re-saves it into a model base path, keeping version 7.
  failed = session_run(old_path, [("log_prob", {"images": expected["images"]})])[0]
  assert isinstance(failed, tf.errors.FailedPreconditionError), failed
  assert "Could not find variable" in str(failed)
  code, stdout, stderr = processes["upgrade"]
  served = processes["served"]
  assert code == 0, stderr[-3000:]
  assert "Traceback" not in stderr
  assert f"upgraded {old_path} to {served}/3" in stdout
  assert sorted(os.listdir(served)) == ["3", "7"]
  assert (served / "7" / "keep.txt").read_text() == "another version"
  inputs = np.load(processes["dir"] / "inputs.npz")
  calls = good_calls(inputs["images"], inputs["latents"])
  results = session_run(str(served / "3"), list(calls.items()) +
                        [("log_prob", {"images": expected["images"]})])
  for name, upgraded in zip(calls, results):
    for key, value in tf2[name].items():  # the same outputs as main's export in TF2
      np.testing.assert_allclose(upgraded[key], value, rtol=1e-6, atol=0,
                                 err_msg=f"{name}: {key}")
  np.testing.assert_allclose(results[-1]["log_prob"], expected["log_prob"], rtol=1e-6)


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
  with pytest.raises(ValueError, match="num_bins must be an integer >= 2"):
    export.export_saved_model(flow, str(tmp_path / "m"), 1)
