"""The cascade as one optax transformation: stage gates, schedules, frozen state untouched."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from maskpose_jax import cascade


def _stages():
    def stage(name, steps, trainable, lr, **w):
        return ml_collections.ConfigDict(dict(name=name, steps=steps, trainable=trainable,
                                              learning_rate=lr, loss_weights=w))
    return [stage("a", 3, ("detector",), 0.1, skel=1.0, sym=0.5),
            stage("b", 2, ("physique",), 0.2, phys=2.0),
            stage("c", 2, ("detector", "physique"), 0.05, skel=1.0, phys=1.0)]


TRAIN = ml_collections.ConfigDict(dict(optimizer="adam", grad_clip_norm=0.0, weight_decay=0.0,
                                      warmup_steps=1))


def test_schedules_follow_the_stages():
    stages = _stages()
    assert cascade.stage_starts(stages) == (0, 3, 5, 7)
    names = [cascade.stage_name(s, stages) for s in range(9)]
    assert names == ["a"] * 3 + ["b"] * 2 + ["c"] * 4
    weights = [jax.tree.map(float, cascade.loss_weights(s, stages)) for s in (0, 3, 6)]
    assert weights[0]["skel"] == 1.0 and weights[0]["sym"] == 0.5 and weights[0]["phys"] == 0.0
    assert weights[1]["phys"] == 2.0 and weights[1]["skel"] == 0.0
    assert weights[2]["phys"] == 1.0
    rates = [float(cascade.learning_rate(s, stages, 2)) for s in range(7)]
    np.testing.assert_allclose(rates, [0.05, 0.1, 0.1, 0.1, 0.2, 0.025, 0.05], rtol=1e-6)


def test_gate_freezes_modules_and_their_state():
    stages = _stages()
    optimizer = cascade.make_optimizer(stages, TRAIN)
    params = {"detector": {"w": jnp.ones(3)}, "physique": {"w": jnp.ones(2)}}
    grads = {"detector": {"w": jnp.full(3, 0.5)}, "physique": {"w": jnp.full(2, -1.0)}}
    state = optimizer.init(params)
    update = jax.jit(optimizer.update)
    moved = []
    reference = optax.adam(0.1)  # the detector in stage a is plain Adam at lr 0.1
    ref_state = reference.init(params["detector"])
    for step in range(7):
        before = jax.tree.map(np.asarray, state)
        updates, state = update(grads, state, params)
        moved.append({m: bool(np.any(np.asarray(updates[m]["w"]) != 0)) for m in params})
        if step < 3:
            ref_updates, ref_state = reference.update(grads["detector"], ref_state)
            np.testing.assert_allclose(updates["detector"]["w"], ref_updates["w"], rtol=1e-6)
        if step in (3, 4):  # detector frozen: its Adam state is exactly the one of step 2
            det_before = before.inner_states["detector"].inner_state.inner
            det_after = state.inner_states["detector"].inner_state.inner
            jax.tree.map(np.testing.assert_array_equal, det_before, det_after)
    assert [m["detector"] for m in moved] == [True] * 3 + [False] * 2 + [True] * 2
    assert [m["physique"] for m in moved] == [False] * 3 + [True] * 4
    assert state.inner_states["physique"].inner_state.count == 7  # the global step
    assert state.inner_states["physique"].inner_state.inner[0].count == 4  # its active steps


def test_one_compilation_across_stages():
    stages = _stages()
    optimizer = cascade.make_optimizer(stages, TRAIN)
    params = {"detector": {"w": jnp.ones(3)}, "physique": {"w": jnp.ones(2)}}
    state = optimizer.init(params)

    @jax.jit
    def step(params, state):
        grads = jax.tree.map(jnp.ones_like, params)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    for _ in range(7):
        params, state = step(params, state)
    assert step._cache_size() == 1


def test_lr_scale_slows_one_module_against_plain_adam():
    rng = np.random.default_rng(1)
    stage = ml_collections.ConfigDict(dict(
        name="both", steps=5, trainable=("detector", "physique"), learning_rate=0.1,
        lr_scale=dict(physique=0.25), loss_weights={}))
    optimizer = cascade.make_optimizer([stage], TRAIN)
    params = {m: {"w": jnp.asarray(rng.normal(size=3), jnp.float32)} for m in cascade.MODULES}
    state = optimizer.init(params)
    references = {"detector": optax.adam(0.1), "physique": optax.adam(0.025)}
    ref_states = {m: references[m].init(params[m]) for m in cascade.MODULES}
    for _ in range(4):
        grads = {m: {"w": jnp.asarray(rng.normal(size=3), jnp.float32)} for m in cascade.MODULES}
        updates, state = optimizer.update(grads, state, params)
        for m in cascade.MODULES:
            expected, ref_states[m] = references[m].update(grads[m], ref_states[m])
            np.testing.assert_allclose(updates[m]["w"], expected["w"], rtol=1e-5, atol=1e-7)


def test_bad_stages_name_the_key():
    stages = _stages()
    stages[1].trainable = ("decoder",)
    with pytest.raises(ValueError, match=r"config.stages\[1\]"):
        cascade.validate_stages(stages)
    stages = _stages()
    stages[2].loss_weights.bogus = 1.0
    with pytest.raises(ValueError, match="bogus"):
        cascade.validate_stages(stages)
    for scales in (dict(decoder=0.1), dict(physique=0.0), 0.1, dict(physique="slow")):
        stages = _stages()
        stages[0].lr_scale = scales
        with pytest.raises(ValueError, match=r"config.stages\[0\] \(a\).lr_scale"):
            cascade.validate_stages(stages)


@pytest.mark.parametrize("name, reference", [
    ("adam", lambda: optax.chain(optax.add_decayed_weights(0.3), optax.adam(0.1))),
    ("adamw", lambda: optax.adamw(0.1, weight_decay=0.3)),
    ("sgd", lambda: optax.chain(optax.add_decayed_weights(0.3),
                                optax.sgd(0.1, momentum=cascade.SGD_MOMENTUM))),
])
def test_optimizer_and_weight_decay_match_optax(name, reference):
    stage = _stages()[0]
    train = ml_collections.ConfigDict(dict(TRAIN, optimizer=name, weight_decay=0.3))
    optimizer = cascade.make_optimizer([stage], train)
    reference = reference()
    rng = np.random.default_rng(0)
    params = {"detector": {"w": jnp.asarray(rng.normal(size=4), jnp.float32)},
              "physique": {"w": jnp.zeros(2)}}
    state, ref_state = optimizer.init(params), reference.init(params["detector"])
    ref_params = params["detector"]
    for _ in range(5):
        grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32),
                             params)
        updates, state = optimizer.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        ref_updates, ref_state = reference.update(grads["detector"], ref_state, ref_params)
        ref_params = optax.apply_updates(ref_params, ref_updates)
        np.testing.assert_allclose(params["detector"]["w"], ref_params["w"], rtol=1e-5,
                                   atol=1e-6)


def test_unknown_optimizer_names_the_key():
    train = ml_collections.ConfigDict(dict(TRAIN, optimizer="lamb"))
    with pytest.raises(ValueError, match=r"config.train.optimizer.*'lamb'"):
        cascade.make_optimizer(_stages(), train)
