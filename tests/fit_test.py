"""Tests for experiments.fit, the per-example fitting harness, on the tiny dataset."""

import numpy as np
import pytest

from experiments import fit
from experiments.configs import tiny


@pytest.fixture(scope="module")
def rows():
    config = tiny.get_config()
    return fit.run(config, split="train", examples=4, steps=40, lr=10.0,
                   starts=["noise0", "noise100", "template"], restarts=2, echo=lambda _: None)


def test_fits_lower_the_loss_and_are_scored_against_the_truth(rows):
    truth = rows["truth_BxJx3"]
    assert truth.shape == (4, 17, 3)
    assert rows["noise0"]["start"] == pytest.approx(0.0, abs=1e-3)
    assert 60.0 < rows["noise100"]["start"] < 140.0  # RMS 100 mm offsets per joint
    for start in ("noise0", "noise100", "template"):
        row = rows[start]
        assert row["fits_BxJx3"].shape == (4, 17, 3)
        assert np.isfinite(row["fits_BxJx3"]).all()
        assert row["loss"] <= row["start_loss"] + 1e-6, start
        assert row["mpjpe_flip"] <= row["mpjpe"] + 1e-6 and 0.0 <= row["below"] <= 1.0
    # MPJPE against an independent NumPy root-relative error.
    fits = rows["noise100"]["fits_BxJx3"].astype(np.float64)
    rel_fit, rel_truth = fits - fits[:, :1], truth - truth[:, :1]
    want = np.linalg.norm(rel_fit - rel_truth, axis=-1).mean()
    assert rows["noise100"]["mpjpe"] == pytest.approx(want, rel=1e-4)


def test_template_start_is_centred_on_the_masks(rows):
    truth = rows["truth_BxJx3"]
    fits = rows["template"]["fits_BxJx3"]
    # No ground truth placed it: the masks' triangulated centre lands near the person.
    assert np.linalg.norm(fits.mean(axis=1) - truth.mean(axis=1), axis=-1).max() < 400.0


def test_unknown_start_is_refused():
    with pytest.raises(ValueError, match="unknown start 'noisy'"):
        fit.run(tiny.get_config(), split="train", examples=1, steps=1, lr=1.0,
                starts=["noisy"])


def test_a_pretrained_physique_network_is_fitted_through():
    """With physique.pretrain_steps > 0 the harness pre-trains the network and fits through it
    (the phys term is in the fit); without, the network kind's term is left out."""
    echoed = []
    config = tiny.get_config("pretrained_physique")
    rows = fit.run(config, split="train", examples=2, steps=5, lr=10.0, starts=["noise100"],
                   echo=echoed.append)
    assert any(line.startswith("physique prior: held-out loss") for line in echoed)
    truth_line = next(line for line in echoed if line.startswith("at the truth"))
    assert "phys 0." in truth_line and np.isfinite(rows["noise100"]["loss"])
    config.physique.pretrain_steps = 0
    echoed.clear()
    fit.run(config, split="train", examples=2, steps=5, lr=10.0, starts=["noise100"],
            echo=echoed.append)
    assert any("the physique term is left out" in line for line in echoed)
    assert not any(line.startswith("physique prior") for line in echoed)
