"""Tests of maskpose_jax.reporting: JSON lines, TensorBoard records, console line, multi-host,
the results files of an evaluation."""

import glob
import io
import json
import os
import struct

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from tensorboardX.proto import event_pb2
from tensorboardX.record_writer import masked_crc32c

from maskpose_jax import evaluation
from maskpose_jax import reporting
from maskpose_jax import skeleton


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(reporting.time, "time", fake)
    return fake


def read_events(logdir):
    """All Event protos of the event files under logdir, checking the record framing and CRCs."""
    paths = glob.glob(os.path.join(logdir, "events.out.tfevents.*"))
    assert paths, f"no event file under {logdir}"
    events = []
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        pos = 0
        while pos < len(data):
            header = data[pos:pos + 8]
            (length,) = struct.unpack("<Q", header)
            (header_crc,) = struct.unpack("<I", data[pos + 8:pos + 12])
            assert header_crc == masked_crc32c(header)
            payload = data[pos + 12:pos + 12 + length]
            (payload_crc,) = struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])
            assert payload_crc == masked_crc32c(payload)
            events.append(event_pb2.Event.FromString(payload))
            pos += 16 + length
    return events


def summary_values(events):
    """[(step, tag, value proto)] of every summary value."""
    return [(e.step, v.tag, v) for e in events if e.HasField("summary") for v in e.summary.value]


def test_jsonl_one_line_per_call(tmp_path, clock):
    reporter = reporting.Reporter(tmp_path, total_steps=600)
    calls = [(0, "structure", {"skel": 0.5, "sym": np.float32(0.25)}),
             (50, "structure", {"skel": jnp.float32(0.125), "sym": np.float64(0.0625)}),
             (100, "eval", {"eval/mpjpe": 123.5})]
    for step, stage, values in calls:
        clock.now += 10.0
        reporter.scalars(step, stage, values)
        # Flushed at every call: readable before close().
        lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
        assert json.loads(lines[-1])["step"] == step
    reporter.close()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len(calls)
    for i, (line, (step, stage, values)) in enumerate(zip(lines, calls)):
        record = json.loads(line)
        assert record["step"] == step and record["stage"] == stage
        assert record["time"] == pytest.approx(1000.0 + 10.0 * (i + 1))
        assert set(record) == {"step", "stage", "time", *values}
        for name, value in values.items():
            assert record[name] == pytest.approx(float(value), rel=1e-7)


def test_jsonl_appends_on_resume(tmp_path, clock):
    with reporting.Reporter(tmp_path, total_steps=10) as reporter:
        reporter.scalars(1, "joint", {"loss": 1.0})
    with reporting.Reporter(tmp_path, total_steps=10) as reporter:
        reporter.scalars(2, "joint", {"loss": 2.0})
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["loss"] for line in lines] == [1.0, 2.0]


def test_read_metrics_resumed_run_and_cut_line(tmp_path, clock):
    with reporting.Reporter(tmp_path, total_steps=10) as reporter:
        reporter.scalars(2, "joint", {"loss": 1.0})
        reporter.scalars(4, "joint", {"loss": 0.5})
        reporter.scalars(4, "eval", {"eval_mpjpe": 200.0})
    with reporting.Reporter(tmp_path, total_steps=10) as reporter:  # resumed from step 2
        reporter.scalars(4, "joint", {"loss": 0.25})
        reporter.scalars(6, "joint", {"loss": 0.125})
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 8, "stage": "jo')  # killed mid-line
    records = reporting.read_metrics(tmp_path)
    assert [(r["step"], r["stage"]) for r in records] == [
        (2, "joint"), (4, "eval"), (4, "joint"), (6, "joint")]
    assert [r["loss"] for r in reporting.read_metrics(tmp_path, "joint")] == [1.0, 0.25, 0.125]
    assert [r["eval_mpjpe"] for r in reporting.read_metrics(tmp_path, "eval")] == [200.0]


def test_read_metrics_names_a_bad_line_and_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics.jsonl"):
        reporting.read_metrics(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "stage": "a"}\nnot json\n'
                                            '{"step": 2, "stage": "a"}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl line 2"):
        reporting.read_metrics(tmp_path)


def test_tensorboard_scalars_images_text(tmp_path, clock):
    reporter = reporting.Reporter(tmp_path, total_steps=100)
    rng = np.random.default_rng(0)
    expected = {}
    for step in (10, 20):
        clock.now += 1.0
        values = {"train/skel": rng.uniform(), "train/sym": rng.uniform()}
        reporter.scalars(step, "structure", values)
        expected.update({(step, tag): value for tag, value in values.items()})
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    reporter.images(20, {"panel": image})
    reporter.text(0, "config", "| a | b |\n|---|---|\n| 1 | 2 |")
    reporter.close()

    values = summary_values(read_events(tmp_path / "tensorboard"))
    scalars = {(step, tag): v.simple_value for step, tag, v in values if v.HasField("simple_value")}
    assert set(scalars) == set(expected)
    for key, value in expected.items():
        assert scalars[key] == pytest.approx(value, rel=1e-6)  # stored as float32

    images = [(step, v.image) for step, tag, v in values if tag == "panel"]
    assert len(images) == 1 and images[0][0] == 20
    assert (images[0][1].height, images[0][1].width, images[0][1].colorspace) == (20, 30, 3)
    decoded = np.asarray(Image.open(io.BytesIO(images[0][1].encoded_image_string)))
    np.testing.assert_array_equal(decoded, image)  # PNG is lossless

    texts = [v for _, tag, v in values if tag.startswith("config")]
    assert len(texts) == 1
    assert b"| 1 | 2 |" in texts[0].tensor.string_val[0]


def test_images_rejects_non_uint8(tmp_path):
    with reporting.Reporter(tmp_path, total_steps=1) as reporter:
        with pytest.raises(ValueError, match="uint8"):
            reporter.images(0, {"x": np.zeros((4, 4, 3), np.float32)})


def test_non_primary_writes_nothing(tmp_path, capsys, clock):
    workdir = tmp_path / "run"
    reporter = reporting.Reporter(workdir, total_steps=100, is_primary=False)
    reporter.scalars(1, "structure", {"skel": 1.0})
    clock.now += 1.0
    reporter.scalars(2, "structure", {"skel": 1.0})
    reporter.images(2, {"panel": np.zeros((8, 8, 3), np.uint8)})
    reporter.text(2, "config", "x")
    reporter.close()
    assert not workdir.exists()
    assert capsys.readouterr().out == ""


def test_console_line_stage_rate_eta(tmp_path, capsys, clock):
    reporter = reporting.Reporter(tmp_path, total_steps=6000)
    reporter.scalars(1000, "structure", {"skel": 0.0123, "sym": 0.004})
    first = capsys.readouterr().out.strip()
    assert first == "step 1000/6000 [structure] skel 0.0123 sym 0.004 | ? steps/s | ETA ?"

    clock.now += 62.5  # 200 steps in 62.5 s: 3.2 steps/s; 4800 steps left: 1500 s
    reporter.scalars(1200, "structure", {"skel": 0.0123, "sym": 0.004})
    line = capsys.readouterr().out.strip()
    assert line == "step 1200/6000 [structure] skel 0.0123 sym 0.004 | 3.2 steps/s | ETA 25m00s"

    # Evaluation metrics at the same step keep the rate measured by training.
    clock.now += 30.0
    reporter.scalars(1200, "eval", {"eval/mpjpe": 87.25})
    line = capsys.readouterr().out.strip()
    assert line.startswith("step 1200/6000 [eval] eval/mpjpe 87.25 |")
    assert line.endswith("| 3.2 steps/s | ETA 25m00s")

    # The next rate counts the evaluation time: 300 steps in 30 + 70 s.
    clock.now += 70.0
    reporter.scalars(1500, "shape", {"phys": 0.5})
    line = capsys.readouterr().out.strip()
    assert "[shape]" in line and line.endswith("| 3 steps/s | ETA 25m00s")

    clock.now += 0.25  # 500 steps in 0.25 s: printed without an exponent
    reporter.scalars(2000, "shape", {"phys": 0.5})
    assert capsys.readouterr().out.strip().endswith("| 2000 steps/s | ETA 2s")
    reporter.close()


def test_closed_reporter_raises(tmp_path):
    reporter = reporting.Reporter(tmp_path, total_steps=1)
    reporter.close()
    reporter.close()
    with pytest.raises(RuntimeError, match="closed"):
        reporter.scalars(0, "x", {"a": 1.0})


@pytest.mark.parametrize("seconds, text", [
    (0, "0s"), (42.4, "42s"), (59.6, "1m00s"), (1510, "25m10s"), (3600, "1h00m"),
    (11100, "3h05m"), (None, "?"), (float("inf"), "?"), (-1, "?")])
def test_format_duration(seconds, text):
    assert reporting.format_duration(seconds) == text


def test_markdown_and_write_results(tmp_path):
    rng = np.random.default_rng(8)
    n = 12
    gt = rng.normal(0, 300, (n, skeleton.NUM_JOINTS, 3))
    pred = gt + rng.normal(0, 50, (n, skeleton.NUM_JOINTS, 3))
    gt_2d = rng.uniform(0, 63, (n, skeleton.NUM_JOINTS, 2))
    res = evaluation.compute_results(pred, gt, gt_2d + 1.0, gt_2d, ["Walk", "Greet"] * 6, 64,
                                     0.1)
    res["num_frames"] = 6
    md = reporting.results_markdown(res, "Synthetic test")
    assert "## Synthetic test" in md and "oracle per-joint swap" in md and "global flip" in md
    for k in ("mpjpe", "p_mpjpe", "mpjpe_oracle"):
        assert f"{res[k]:.1f}" in md
    assert f"| {res['pck3d']:.3f} |" in md and f"{res['auc3d_global_flip']:.3f}" in md
    walk = res["per_action"]["Walk"]
    assert f"| Walk | {walk['mpjpe']:.1f} | {walk['p_mpjpe']:.1f} | 6 |" in md
    assert "constant standing skeleton" not in md

    # The no-network reference adds a last column.
    res[evaluation.BASELINE_KEY] = {k: 400.0 + i for i, k in enumerate(evaluation.METRIC_KEYS)}
    with_baseline = reporting.results_markdown(res, "Synthetic test")
    assert "constant standing skeleton (no network) |" in with_baseline
    assert (f"| MPJPE (mm) | {res['mpjpe']:.1f} | {res['mpjpe_global_flip']:.1f} | "
            f"{res['mpjpe_oracle']:.1f} | 400.0 |") in with_baseline
    assert f"| {res['pck2d_oracle']:.3f} | 405.000 |" in with_baseline
    del res[evaluation.BASELINE_KEY]

    workdir = os.path.join(tmp_path, "run")
    json_path, md_path = reporting.write_results(res, workdir, "Synthetic test")
    assert sorted(os.listdir(workdir)) == ["results.json", "results.md"]
    with open(json_path) as f:
        loaded = json.load(f)
    required = {"num_examples", "num_frames", "global_flip_applied", "per_action"}
    required |= {k + s for k in evaluation.METRIC_KEYS for s in ("", "_global_flip", "_oracle")}
    assert required <= set(loaded)
    assert loaded["mpjpe"] == res["mpjpe"] and loaded["per_action"]["Greet"]["num_examples"] == 6
    with open(md_path) as f:
        assert f.read() == md
