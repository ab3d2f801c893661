"""Reports: of training, one console line, one JSON line and TensorBoard scalars per log step;
of an evaluation, `results.json` and `results.md` (`write_results`).

Everything lands under the run's workdir:
    <workdir>/metrics.jsonl    one JSON object per `scalars` call (appended, so a resumed run
                               continues the same file)
    <workdir>/tensorboard/     tensorboardX event files (scalars, image panels, Markdown text)
    <workdir>/results.json     the evaluation's metrics (experiments.evaluate), and
    <workdir>/results.md       the same as Markdown tables; each written atomically

Only the primary process (process index 0 in a multi-host run) writes or prints; the others
construct a `Reporter` with `is_primary=False` and every call becomes a no-op, so the training
loop needs no `if` around its reporting.
"""

import json
import math
import os
import tempfile
import time
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import tensorboardX

from maskpose_jax import evaluation


def say(message: str) -> None:
    """Prints a console message from the primary process only (process index 0)."""
    if jax.process_index() == 0:
        print(message, flush=True)


def format_duration(seconds):
    """Compact duration for the console: '42s', '25m10s', '3h05m'; '?' when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


class Reporter:
    """Writes the training reports of one run (console, `metrics.jsonl`, TensorBoard).

    Scalar names are used verbatim as TensorBoard tags and JSON keys, so a caller that wants
    TensorBoard groups names them "train/skel", "eval/mpjpe", ...; the `stage` (cascade stage
    name, or e.g. "eval") goes to the console line and to the JSON line, not into the tags, so
    one loss keeps one curve across the cascade.

    Throughput is measured between consecutive `scalars` calls: (step difference) / (wall time
    difference). A call at the same step as the previous one (e.g. evaluation metrics logged
    right after training metrics) keeps the previous rate. The ETA is
    (total_steps - step) / rate.
    """

    def __init__(self, workdir, total_steps, is_primary=True):
        """Opens the report files (primary process only).

        Args:
            workdir: the run directory; created if missing.
            total_steps: the step count at which training ends (for the ETA and the console).
            is_primary: False on every process but one: that Reporter writes and prints nothing.
        """
        self.workdir = os.fspath(workdir)
        self.total_steps = int(total_steps)
        self.is_primary = bool(is_primary)
        self._last_step = None
        self._last_time = None
        self._steps_per_sec = None
        self._jsonl = None
        self._writer = None
        if self.is_primary:
            os.makedirs(self.workdir, exist_ok=True)
            self._jsonl = open(os.path.join(self.workdir, "metrics.jsonl"), "a", encoding="utf-8")
            self._writer = tensorboardX.SummaryWriter(
                logdir=os.path.join(self.workdir, "tensorboard"), flush_secs=30)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _update_rate(self, step, now):
        if self._last_step is not None:
            d_step, d_time = step - self._last_step, now - self._last_time
            if d_step == 0:
                return  # same step again: keep the reference point and the rate
            # A step that went back (a restarted loop) makes the old rate stale.
            self._steps_per_sec = d_step / d_time if d_step > 0 and d_time > 0 else None
        self._last_step, self._last_time = step, now

    def _check_open(self):
        if self._jsonl is None:
            raise RuntimeError(f"the Reporter of {self.workdir} is closed")

    def console_line(self, step, stage, values):
        """The console line for these values with the current rate and ETA (no side effects)."""
        parts = [f"step {step}/{self.total_steps}", f"[{stage}]"]
        parts += [f"{name} {value:.4g}" for name, value in values.items()]
        line = " ".join(parts)
        rate = self._steps_per_sec
        if rate is None:
            return line + " | ? steps/s | ETA ?"
        eta = max(self.total_steps - step, 0) / rate
        rate_text = f"{rate:.3g}" if rate < 100 else f"{rate:.0f}"
        return line + f" | {rate_text} steps/s | ETA {format_duration(eta)}"

    def scalars(self, step, stage, values):
        """Reports a dict of scalars at one step.

        Prints `step 1200/6000 [structure] skel 0.0123 sym 0.004 | 3.2 steps/s | ETA 25m10s`,
        appends {"step", "stage", "time" (Unix seconds), **values} to metrics.jsonl (flushed) and
        writes one TensorBoard scalar per value.

        Args:
            step: the training step (int or integer scalar).
            stage: cascade stage name (or another label such as "eval").
            values: {name: scalar}; Python, NumPy or JAX scalars (converted with float()).
        """
        if not self.is_primary:
            return
        self._check_open()
        step = int(step)
        now = time.time()
        values = {str(name): float(value) for name, value in values.items()}
        self._update_rate(step, now)
        print(self.console_line(step, stage, values), flush=True)
        record = {"step": step, "stage": str(stage), "time": now, **values}
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        for name, value in values.items():
            self._writer.add_scalar(name, value, global_step=step, walltime=now)
        self._writer.flush()

    def images(self, step, images):
        """Writes TensorBoard images.

        Args:
            step: the training step.
            images: {tag: HxWx3 uint8 RGB image}.
        """
        if not self.is_primary:
            return
        self._check_open()
        for tag, image_HxWx3 in images.items():
            image_HxWx3 = np.asarray(image_HxWx3)
            if image_HxWx3.dtype != np.uint8 or image_HxWx3.ndim != 3 or image_HxWx3.shape[-1] != 3:
                raise ValueError(f"image {tag!r} must be HxWx3 uint8, got "
                                 f"{image_HxWx3.shape} {image_HxWx3.dtype}")
            self._writer.add_image(tag, image_HxWx3, global_step=int(step), dataformats="HWC")
        self._writer.flush()

    def text(self, step, tag, markdown):
        """Writes a Markdown text summary (e.g. the config, or a results table)."""
        if not self.is_primary:
            return
        self._check_open()
        self._writer.add_text(tag, str(markdown), global_step=int(step))
        self._writer.flush()

    def close(self):
        """Flushes and closes the files; later calls are errors, a second close is harmless."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None


def read_metrics(workdir, stage=None) -> list[dict]:
    """The records `Reporter.scalars` appended to `<workdir>/metrics.jsonl`, in step order.

    Where a resumed run logged a (stage, step) again, the later record replaces the earlier one.
    A last line cut short (a run killed while writing it) is left out; any other line that is
    not a JSON record is an error naming the file and the line.

    Args:
        workdir: the run directory.
        stage: keep only the records of this stage (e.g. "eval"); None keeps all.

    Raises:
        FileNotFoundError: the workdir has no metrics.jsonl (the run has not logged yet).
        ValueError: a malformed line before the last.
    """
    path = os.path.join(os.fspath(workdir), "metrics.jsonl")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no {path}: the run has logged nothing yet")
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    records = {}
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
            key = (record["stage"], int(record["step"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            if number == len(lines):
                break  # cut short by a kill
            raise ValueError(f"{path} line {number}: not a metrics record: {line[:80]!r}") from None
        records.pop(key, None)  # the later record, at the later position
        records[key] = record
    kept = [r for r in records.values() if stage is None or r["stage"] == stage]
    return sorted(kept, key=lambda r: r["step"])  # stable: a step's stages keep file order


_LABELS = {
    "mpjpe": "MPJPE (mm)",
    "n_mpjpe": "N-MPJPE (mm)",
    "p_mpjpe": "P-MPJPE (mm)",
    "pck3d": "3D-PCK @150 mm",
    "auc3d": "AUC 0-150 mm",
    "pck2d": "2D-PCK",
}


def _format(key: str, value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.1f}" if key in evaluation.MM_KEYS else f"{value:.3f}"


def results_markdown(results: Mapping[str, Any], title: str) -> str:
    """Renders `evaluation.compute_results`'s output as Markdown: the metrics, then per action.

    Args:
        results: a dict from `evaluation.compute_results` / `evaluation.Accumulator.results`.
        title: heading of the section.

    Returns:
        Markdown text (errors in mm with one decimal, PCK/AUC as fractions with three).
    """
    flip_note = "applied" if results["global_flip_applied"] else "not applied"
    counts = f"{results['num_examples']} view-samples"
    if "num_frames" in results:
        counts += f" from {results['num_frames']} frames"
    if results.get("num_single_view"):
        counts += (f"; {results['num_single_view']} single-view samples take their root depth "
                   "from the crop scale (MPJPE carries that prior; N- and P-MPJPE do not)")
    lines = [
        f"## {title}", "",
        f"{counts}. 2D-PCK threshold: {results['pck2d_threshold']:g} x crop side "
        f"= {results['pck2d_threshold_px']:g} px.", "",
        "| metric | as predicted | global flip (one bit of truth) "
        "| oracle per-joint swap (authors' protocol, reads truth) |",
        "|---|---:|---:|---:|",
    ]
    baseline = results.get(evaluation.BASELINE_KEY)
    if baseline is not None:
        lines[-2] += " constant standing skeleton (no network) |"
        lines[-1] += "---:|"
    for k in evaluation.METRIC_KEYS:
        suffixes = ("", evaluation.GLOBAL_FLIP_SUFFIX, evaluation.ORACLE_SUFFIX)
        cells = [_format(k, results.get(k + s)) for s in suffixes]
        if baseline is not None:
            cells.append(_format(k, baseline.get(k)))
        lines.append(f"| {_LABELS[k]} | " + " | ".join(cells) + " |")
    lines += [
        "", f"Global left/right relabelling: {flip_note} (chosen by the lower overall MPJPE).",
        *([] if baseline is None else [
            "", "Last column, a reference and not a model: the same standing skeleton "
            "(`skeleton.STANDING_TEMPLATE`, z = 0) for every sample, lifted and scored like the "
            "predictions. A model that does not beat it has not learned pose from the images."]),
        "", "### Per action (as predicted)", "",
        "| action | MPJPE (mm) | P-MPJPE (mm) | samples |", "|---|---:|---:|---:|",
    ]
    for action, row in sorted(results["per_action"].items()):
        lines.append(f"| {action} | {_format('mpjpe', row['mpjpe'])} | "
                     f"{_format('p_mpjpe', row['p_mpjpe'])} | {row['num_examples']} |")
    if "per_joint_mpjpe" in results:
        lines += ["", "### Per joint (as predicted, root-relative, mm)", "",
                  "| " + " | ".join(results["per_joint_mpjpe"]) + " |",
                  "|" + "---:|" * len(results["per_joint_mpjpe"]),
                  "| " + " | ".join(f"{v:.0f}" for v in results["per_joint_mpjpe"].values())
                  + " |"]
    return "\n".join(lines) + "\n"


def _json_ready(value):
    """Replaces non-finite floats by None (strict JSON has no NaN) and NumPy scalars by Python."""
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_atomic(path: str, data: str | bytes) -> None:
    """Writes `data` (text as UTF-8, or bytes) to `path` whole: a temporary file beside it,
    renamed over `path`; on any failure the temporary file is removed and `path` is untouched."""
    directory = os.path.dirname(path) or "."
    fd, tmp_path = tempfile.mkstemp(dir=directory, prefix=".tmp_", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def write_results(results: Mapping[str, Any], workdir: str, title: str) -> tuple[str, str]:
    """Writes `<workdir>/results.json` and `<workdir>/results.md`, each atomically (temp + rename).

    Args:
        results: a dict from `evaluation.compute_results` / `evaluation.Accumulator.results`.
        workdir: output folder (created if missing).
        title: heading of the Markdown section.

    Returns:
        (json_path, md_path).
    """
    os.makedirs(workdir, exist_ok=True)
    json_path = os.path.join(workdir, "results.json")
    md_path = os.path.join(workdir, "results.md")
    write_atomic(json_path, json.dumps(_json_ready(results), indent=2, sort_keys=True,
                                        allow_nan=False) + "\n")
    write_atomic(md_path, results_markdown(results, title))
    return json_path, md_path
