"""The trainer on the tiny config: sharded == single device, one compilation across stages, no
ground truth in training, non-finite stop, and end to end (train, evaluate, resume, kill)."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from data_builders import configured
from experiments.configs import synthetic
from experiments.configs import tiny
from maskpose_jax import cascade
from maskpose_jax import checkpoint
from maskpose_jax import datasets
from maskpose_jax import evaluation
from maskpose_jax import factory
from maskpose_jax import fit_cache
from maskpose_jax import fused
from maskpose_jax import input_pipeline
from maskpose_jax import physique_prior
from maskpose_jax import sharding
from maskpose_jax import train
from maskpose_jax import train_step as train_step_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tfds"))
    configured.get_builder(_config(path))  # builds the tiny dataset once
    return path


def _config(data_dir, variant="default"):
    config = tiny.get_config(variant)
    config.data.data_dir = data_dir
    return config


def _setup(config, mesh):
    source = configured.open_split(config, "train")
    image_size = datasets.image_size_of(source)
    detector, physique = factory.create_models(config)
    optimizer = cascade.make_optimizer(config.stages, config.train)
    state = factory.init_state(config, detector, physique, optimizer, image_size, mesh,
                               fit_cache.size(config, source))
    step = train_step_lib.make_train_step(config, detector, physique, optimizer, image_size, mesh)
    return source, state, step


def _batches(config, source, count):
    iterator = iter(datasets.make_train_dataset(config, datasets.Sources(source)))
    return [next(iterator) for _ in range(count)]


def test_sharded_step_equals_single_device(data_dir):
    assert jax.device_count() == 4
    # The network's path (no_fit): the default's in-loop fit makes discrete choices (the lower
    # of two starts) that float rounding across device counts may flip.
    config = _config(data_dir, "no_fit")
    params = {}
    for name, devices in (("four", jax.devices()), ("one", jax.devices()[:1])):
        mesh = sharding.make_mesh(devices)
        source, state, step = _setup(config, mesh)
        for batch in _batches(config, source, 2):
            state, metrics = step(state, sharding.shard_batch(batch, mesh))
        assert bool(metrics["finite"])
        params[name] = jax.device_get(state.params)
    flat_four = jax.tree.leaves(params["four"])
    flat_one = jax.tree.leaves(params["one"])
    moved = 0
    for a, b in zip(flat_four, flat_one):
        # Adam moves each parameter by ~1e-3 a step: 1e-5 is 1% of one update.
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
        moved += 1
    assert moved > 10


@pytest.mark.parametrize("variant, names", [("paper", {"structure", "shape", "joint"}),
                                            ("coarse_to_fine", {"coarse", "fine"})])
def test_one_compilation_across_stage_boundaries(data_dir, variant, names):
    config = _config(data_dir, variant)
    mesh = sharding.make_mesh()
    source, state, step = _setup(config, mesh)
    total = cascade.total_steps(config.stages)
    stages_seen = set()
    for i, batch in enumerate(_batches(config, source, total)):
        stages_seen.add(cascade.stage_name(i, config.stages))
        state, _ = step(state, sharding.shard_batch(batch, mesh))
    assert stages_seen == names
    assert step._cache_size() == 1


@pytest.mark.parametrize("variant", [v for v in synthetic.VARIANTS if v != "oracle"])
def test_training_batches_carry_no_ground_truth(data_dir, variant):
    """Every unsupervised variant's training batches hold the training fields only."""
    config = _config(data_dir, variant)
    source = configured.open_split(config, "train")
    batch = _batches(config, source, 1)[0]
    # The fit cache's key is the example's position in the split, an identifier.
    extra = {input_pipeline.INDEX_FIELD} if config.loss.fit_cache else set()
    assert set(batch) == set(input_pipeline.TRAIN_FIELDS) | extra


@pytest.mark.parametrize("variant", ["default", "no_fit", "refine", "refine_cache"])
def test_train_step_ignores_ground_truth_it_is_handed(data_dir, variant):
    """Even a batch that carries the truth trains exactly as one that does not."""
    config = _config(data_dir, variant)
    mesh = sharding.make_mesh()
    source, state, step = _setup(config, mesh)
    batch = _batches(config, source, 1)[0]
    poisoned = {**batch, "joints_world": np.full((4, 17, 3), np.nan, np.float32)}
    clean_state, clean = step(jax.tree.map(jnp.copy, state), sharding.shard_batch(batch, mesh))
    dirty_state, dirty = step(state, sharding.shard_batch(poisoned, mesh))
    for key in clean:
        np.testing.assert_array_equal(clean[key], dirty[key])
    for a, b in zip(jax.tree.leaves(clean_state), jax.tree.leaves(dirty_state)):
        np.testing.assert_array_equal(a, b)
    # The network-in-the-loop fit runs in the step (and only where asked for).
    assert (float(clean["refine_mm"]) > 0.0) == (variant != "no_fit")


def test_fit_cache_holds_each_visited_examples_fit(data_dir):
    """The cache has one entry per training example; a step fills exactly its batch's entries,
    and a second visit starts from them where they score better than the new prediction."""
    config = _config(data_dir, "refine_cache")
    mesh = sharding.make_mesh()
    source, state, step = _setup(config, mesh)
    assert state.fit_cache["joints"].shape == (len(source), 17, 3)
    batch = _batches(config, source, 1)[0]
    index = np.asarray(batch[input_pipeline.INDEX_FIELD])
    assert len(set(index.tolist())) == len(index) and index.max() < len(source)
    state, metrics = step(state, sharding.shard_batch(batch, mesh))
    assert float(metrics["cache_used"]) == 0.0 and "cache_joints_BxJx3" not in metrics
    filled = np.asarray(state.fit_cache["filled"])
    np.testing.assert_array_equal(np.flatnonzero(filled), np.sort(index))
    joints = np.asarray(state.fit_cache["joints"])
    assert np.isfinite(joints).all() and np.abs(joints[index]).min(axis=(1, 2)).max() > 0
    assert not joints[np.flatnonzero(filled == 0)].any()
    _, again = step(state, sharding.shard_batch(batch, mesh))
    assert float(again["cache_used"]) > 0.0
    with pytest.raises(ValueError, match="config.loss.refine_steps"):
        bad = _config(data_dir, "refine_cache")
        bad.loss.refine_steps = 0
        fit_cache.size(bad, source)
    with pytest.raises(ValueError, match="config.data.mix"):
        bad = _config(data_dir, "refine_cache")
        bad.data.mix = [{"name": "synthetic", "weight": 1.0}]
        fit_cache.size(bad, source)


def test_capsules_variant_trains_the_detector_only(data_dir):
    config = _config(data_dir, "capsules")
    assert config.physique.kind == "capsules" and len(config.stages) == 1
    mesh = sharding.make_mesh()
    source, state, step = _setup(config, mesh)
    before = jax.device_get(state.params)
    for batch in _batches(config, source, 2):
        state, metrics = step(state, sharding.shard_batch(batch, mesh))
    assert bool(metrics["finite"]) and float(metrics["phys"]) > 0
    after = jax.device_get(state.params)
    assert np.abs(after["detector"]["template_prior"]
                  - before["detector"]["template_prior"]).max() > 0
    for a, b in zip(jax.tree.leaves(after["physique"]), jax.tree.leaves(before["physique"])):
        np.testing.assert_array_equal(a, b)


def test_adapted_physique_moves_at_its_share_of_the_rate(data_dir):
    """adapted_physique trains the physique network beside the detector; its first update is
    physique_lr_scale (0.1) times the one at the full rate, through the real train step."""
    moved = {}
    for scale in (None, 1.0):
        config = _config(data_dir, "adapted_physique")
        assert config.stages[0].trainable == ("detector", "physique")
        if scale is not None:
            config.stages[0].lr_scale.physique = scale
        mesh = sharding.make_mesh()
        source, state, step = _setup(config, mesh)
        before = jax.device_get(state.params["physique"])
        state, metrics = step(state, sharding.shard_batch(_batches(config, source, 1)[0], mesh))
        assert bool(metrics["finite"])
        moved[scale] = jax.tree.map(np.subtract, jax.device_get(state.params["physique"]), before)
    assert max(np.abs(leaf).max() for leaf in jax.tree.leaves(moved[None])) > 0
    for slow, full in zip(jax.tree.leaves(moved[None]), jax.tree.leaves(moved[1.0])):
        np.testing.assert_allclose(slow, 0.1 * full, rtol=2e-2, atol=1e-8)


def test_pretrained_physique_is_pretrained_before_step_0_and_frozen(data_dir, tmp_path):
    """A fresh run pre-trains the physique network (the same parameters as physique_prior's, the
    run's seed) and the stage, which trains the detector only, leaves them as they were."""
    config = _config(data_dir, "pretrained_physique")
    assert config.physique.pretrain_steps > 0 and config.stages[0].trainable == ("detector",)
    workdir = str(tmp_path / "run")
    train.train_and_evaluate(config, workdir, configured.open_training(config))
    state, _ = factory.restore_latest(config, workdir, sharding.make_mesh())
    _, physique = factory.create_models(config)
    pairs = configured.physique_pairs(config, 32, echo=lambda _: None)
    expected, _ = physique_prior.pretrain(config, physique, pairs, echo=lambda _: None)
    for a, b in zip(jax.tree.leaves(jax.device_get(state.params["physique"])),
                    jax.tree.leaves(expected)):
        np.testing.assert_array_equal(a, b)
    assert int(jax.device_get(state.step)) == 8
    # loss_at_truth scores the fused terms through the run's network (its phys term included).
    done = _run(["-m", "experiments.loss_at_truth", "--config=tiny.py:pretrained_physique",
                 f"--config.data.data_dir={data_dir}", f"--workdir={workdir}", "--examples=4"])
    out, _ = done.communicate(timeout=600)
    assert done.returncode == 0, out
    header = next(line for line in out.splitlines() if line.startswith("| pose |"))
    assert " phys " in header
    assert any(line.startswith("| prediction |") for line in out.splitlines()), out


def test_loss_at_truth_prints_the_reference_table(data_dir, tmp_path):
    done = _run(["-m", "experiments.loss_at_truth", "--config=tiny.py:capsules",
                 f"--config.data.data_dir={data_dir}", f"--workdir={tmp_path}", "--examples=4"])
    out, _ = done.communicate(timeout=600)
    assert done.returncode == 0, out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "total" not in line]
    assert [r.split(" | ")[0][2:] for r in rows] == [
        "truth", "truth, noise 0.05", "truth, z = 0", "half size", "template", "collapsed"]
    for row in rows:
        assert all(np.isfinite(float(x)) for x in row.strip("| ").split(" | ")[1:]), row
    assert "4 examples of synthetic/train" in out
    # What the capsules variant was built for (base.py, README): with a fixed body and scaled
    # background weights the truth scores the lowest total of the reference poses.
    totals = {r.split(" | ")[0][2:]: float(r.split(" | ")[1]) for r in rows}
    assert all(totals["truth"] < t for name, t in totals.items() if name != "truth"), totals


def test_oracle_reads_truth_and_is_labelled(data_dir):
    config = _config(data_dir, "oracle")
    source = configured.open_split(config, "train")
    batch = _batches(config, source, 1)[0]
    assert "joints_world" in batch
    assert config.loss.supervision == "oracle"


def test_non_finite_loss_stops_and_saves(data_dir, tmp_path, monkeypatch):
    real = fused.fused_terms

    def broken(*args, **kwargs):
        terms = real(*args, **kwargs)
        return {**terms, "phys": terms["phys"] * jnp.nan}

    monkeypatch.setattr(fused, "fused_terms", broken)
    with pytest.raises(train.NonFiniteLossError, match=r"step 0 \(stage fused\).*'phys': nan"):
        config = _config(data_dir)
        train.train_and_evaluate(config, str(tmp_path), configured.open_training(config))
    saved = checkpoint.Checkpointer(str(tmp_path / "checkpoints"))
    assert saved.latest_step() is not None


def _run(args, **kwargs):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


def _train_args(data_dir, workdir, *extra):
    return ["-m", "experiments.train", "--config=tiny.py", f"--workdir={workdir}",
            f"--config.data.data_dir={data_dir}", *extra]


def _final_params(workdir, data_dir):
    config = _config(data_dir)
    state, _ = factory.restore_latest(config, str(workdir), sharding.make_mesh())
    return int(state.step), jax.device_get(state.params)


@pytest.mark.slow
def test_end_to_end_train_evaluate_resume(data_dir, tmp_path):
    workdir = tmp_path / "run"
    done = _run(_train_args(data_dir, workdir))
    out, _ = done.communicate(timeout=600)
    assert done.returncode == 0, out
    assert "step 8/8 [fused]" in out and "eval_mpjpe" in out
    lines = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    assert lines[-1]["step"] == 8 and os.listdir(workdir / "tensorboard")

    evaluated = _run(["-m", "experiments.evaluate", "--config=tiny.py", f"--workdir={workdir}",
                      f"--config.data.data_dir={data_dir}"])
    out, _ = evaluated.communicate(timeout=600)
    assert evaluated.returncode == 0, out
    results = json.load(open(workdir / "results.json"))
    for key in ("mpjpe", "n_mpjpe", "p_mpjpe", "pck3d", "auc3d"):
        for suffix in ("", "_global_flip", "_oracle"):
            assert np.isfinite(results[key + suffix]), key + suffix
    assert results["num_examples"] == 20 and np.isfinite(results["mpjpe"])
    assert "| MPJPE (mm) |" in out
    baseline = results[evaluation.BASELINE_KEY]
    assert set(baseline) == set(evaluation.METRIC_KEYS)
    assert all(np.isfinite(v) for v in baseline.values())
    assert "constant standing skeleton (no network)" in out

    # Longer stages: the run resumes at step 8 instead of starting over.
    resumed = _run(_train_args(data_dir, workdir, "--config.stages[0].steps=10"))
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out
    assert "resumed from step 8" in out and "step 10/10" in out


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_result(data_dir, tmp_path):
    extra = ["--config.train.checkpoint_every=2", "--config.train.image_every=0"]
    straight = _run(_train_args(data_dir, tmp_path / "straight", *extra))
    killed = _run(_train_args(data_dir, tmp_path / "killed", *extra))
    checkpoints = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and killed.poll() is None:
        if os.path.isdir(checkpoints) and any(d.isdigit() and int(d) >= 2
                                              for d in os.listdir(checkpoints)):
            break
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=60)
    resumed = _run(_train_args(data_dir, tmp_path / "killed", *extra))
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out
    out, _ = straight.communicate(timeout=600)
    assert straight.returncode == 0, out
    step_a, params_a = _final_params(tmp_path / "straight", data_dir)
    step_b, params_b = _final_params(tmp_path / "killed", data_dir)
    assert step_a == step_b == 8
    for a, b in zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_sigterm_saves_and_exits_cleanly(data_dir, tmp_path):
    workdir = tmp_path / "run"
    process = _run(_train_args(data_dir, workdir, "--config.stages[0].steps=400",
                               "--config.train.checkpoint_every=1000"))
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("step 2/"):
            process.send_signal(signal.SIGTERM)
            break
    out, _ = process.communicate(timeout=300)
    assert process.returncode == 0, "".join(lines) + out
    assert "SIGTERM: saved step" in out
    saved = checkpoint.Checkpointer(str(workdir / "checkpoints")).latest_step()
    assert saved is not None and 2 <= saved < 404


def test_config_errors_name_the_key():
    unknown = _run(["-m", "experiments.train", "--config=tiny.py", "--config.train.nope=1"])
    out, _ = unknown.communicate(timeout=120)
    assert unknown.returncode != 0 and "nope" in out and "Traceback" not in out
    bad_type = _run(["-m", "experiments.train", "--config=tiny.py",
                     "--config.train.batch_size=many"])
    out, _ = bad_type.communicate(timeout=120)
    assert bad_type.returncode != 0 and "batch_size" in out and "Traceback" not in out
    missing = _run(["-m", "experiments.train", "--config=no_such_config.py"])
    out, _ = missing.communicate(timeout=120)
    assert missing.returncode != 0 and "no_such_config.py" in out


def test_real_data_configs_say_what_is_missing(tmp_path):
    from experiments.configs import h36m  # pylint: disable=import-outside-toplevel
    config = h36m.get_config()
    config.data.data_dir = str(tmp_path)
    with pytest.raises(ValueError, match="root_dir is required"):
        configured.get_builder(config)
    config.data.options.root_dir = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        configured.get_builder(config)
    # A release that is there but not built: not built implicitly; the error gives the command.
    config.data.options.root_dir = str(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"python -m data_builders\.build h36m "
                       rf"--data_dir={tmp_path} --root_dir={tmp_path}"):
        configured.get_builder(config)


@pytest.mark.slow
def test_real_data_path_end_to_end(tmp_path):
    """MPI-INF-3DHP's dummy release: builder -> multi-view training -> single-view test evaluation."""
    workdir = tmp_path / "run"
    args = ["--config=tiny_real.py:mpi_inf_3dhp", f"--workdir={workdir}",
            f"--config.data.data_dir={tmp_path / 'data'}", "--config.train.image_every=0"]
    done = _run(["-m", "experiments.train", *args])
    out, _ = done.communicate(timeout=600)
    assert done.returncode == 0, out
    assert "step 8/8 [fused]" in out
    evaluated = _run(["-m", "experiments.evaluate", *args[:3]])
    out, _ = evaluated.communicate(timeout=600)
    assert evaluated.returncode == 0, out
    results = json.load(open(workdir / "results.json"))
    assert results["num_examples"] == results["num_single_view"] > 0
    assert np.isfinite(results["mpjpe"]) and np.isfinite(results["p_mpjpe"])


@pytest.mark.parametrize("name", ["synthetic", "tiny", "tiny_real", "h36m", "mpi_inf_3dhp",
                                  "h36m_in_the_wild"])
def test_no_shipped_config_evaluates_on_test_during_training(name, tmp_path):
    module = __import__(f"experiments.configs.{name}", fromlist=["get_config"])
    variants = getattr(module, "VARIANTS", synthetic.VARIANTS)
    for variant in variants:  # every recipe of the file, not only its default
        config = module.get_config(variant)
        assert config.data.val_split != config.data.eval_split
        assert config.data.val_split in ("", "val"), (name, variant)
        assert not datasets.is_test_split(config, config.data.val_split or "val")
    for test_split in (config.data.eval_split, "test_unseen"):
        config.data.val_split = test_split
        with pytest.raises(ValueError, match="config.data.val_split is config.data.eval_split"):
            train.train_and_evaluate(config, str(tmp_path), configured.open_training(config))
    config.data.val_split = ""
    config.data.train_split = "test"  # nor is a test split trained on
    with pytest.raises(ValueError, match="config.data.train_split is config.data.eval_split"):
        factory.check_config(config)


@pytest.mark.parametrize("tool", ["experiments.fit", "experiments.error_sources",
                                  "experiments.loss_at_truth", "benchmarks.template_fit"])
def test_tools_that_choose_recipes_refuse_a_test_split(tool, tmp_path):
    """Their figures choose losses, settings and recipes: read on val, never on test (nothing
    is built or read before the refusal: the data dir does not exist)."""
    for split in ("test", "test_unseen"):
        done = _run(["-m", tool, "--config=tiny.py", f"--split={split}",
                     f"--workdir={tmp_path}", f"--config.data.data_dir={tmp_path / 'none'}"])
        out, _ = done.communicate(timeout=300)
        assert done.returncode != 0, out
        assert f"--split is config.data.eval_split or another test split ('{split}')" in out, out
        assert not os.path.exists(tmp_path / "none")
