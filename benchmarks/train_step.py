"""Training-step throughput, compile time, memory and a profile split of one step's time.

    python -m benchmarks.train_step [--config=h36m.py] [--batch_size=N] [--steps=5] [--warmup=2]
        [--profile_steps=2] [--image_size=N] [--views=V] [--config.model.dtype=bfloat16 ...]

Builds the models, optimizer, state and step exactly as training does (`factory.create_models`,
`cascade.make_optimizer`, `factory.init_state`, `train_step.make_train_step` on
`sharding.make_mesh()`)
and feeds it one synthetic batch of the config's shapes, put on the mesh once: random images,
masks drawn from a posed skeleton projected through Human3.6M cameras (S1's rig, crops around
the projection), weights of ones. No ground truth is read. The timed loop runs under
`jax.transfer_guard("disallow")`; metrics of step k are fetched (an explicitly allowed transfer)
after step k+1 is dispatched, as `train.train_and_evaluate` does. It checks that the step
compiled once (the jitted function's cache size and JAX's compile events) and prints:
- examples/s and ms per example (global batch / step time),
- compile time (tracing + lowering + XLA compile of the first call, from JAX's monitoring
  events) and the first call's wall time,
- memory: the compiled step's temporaries, arguments and outputs (XLA's memory analysis), the
  process's peak RSS, and the device's peak bytes in use where the backend reports them (GPU),
- the split of a step's time between detector, rendering (triangulation, lifting, cross-view
  projection, Skeleton Masks), shape prior (physique network) and optimizer, from a
  `jax.profiler` trace of `--profile_steps` steps: every XLA op event (thunk or kernel) is
  assigned to the `jax.named_scope` found in its HLO instruction's `op_name` (train_step.py and
  losses.py set them); forward and backward ops of a scope count together.

Defaults by platform: batch 32 on GPU/TPU, 2 on CPU (the config's shapes otherwise; on CPU the
h36m shapes take tens of seconds a step: figures are per example).
"""

import collections
import glob
import gzip
import json
import os
import re
import shutil
import sys
import tempfile
import time

from absl import app
from absl import flags

from experiments import flags as experiment_flags

_BATCH = flags.DEFINE_integer("batch_size", None,
                              "Global batch (default: 32 on GPU/TPU, 2 on CPU).")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps.")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps after the first (compiling) call.")
_PROFILE_STEPS = flags.DEFINE_integer("profile_steps", 2, "Steps traced by the profiler (0: none).")
_IMAGE_SIZE = flags.DEFINE_integer(
    "image_size", None, "Crop side (default: config.data.options.image_size, else 64, the "
    "synthetic builder's default).")
_VIEWS = flags.DEFINE_integer(
    "views", None, "Views per example (default: len(config.data.views), else 4).")

SCOPES = ("detector", "rendering", "shape_prior", "optimizer")
_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                   "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   "/jax/core/compile/backend_compile_duration")

# A standing person in the world frame (mm, Z up, facing +Y), Human3.6M joint order.
_STANDING_WORLD_Jx3 = (
    (0, 0, 950), (-120, 0, 940), (-130, 20, 500), (-130, 0, 80), (120, 0, 940), (130, 20, 500),
    (130, 0, 80), (0, 0, 1180), (0, 0, 1450), (0, 60, 1560), (0, 20, 1700), (170, 0, 1430),
    (200, 0, 1160), (210, 40, 920), (-170, 0, 1430), (-200, 0, 1160), (-210, 40, 920))


def synthetic_batch(batch_size, num_views, image_size, seed=0):
    """A training batch of DESIGN §1's shapes (NumPy): jittered standing poses seen by S1's rig.

    Masks are Skeleton Masks of the projected pose drawn wide (a silhouette-like blob),
    thresholded; weights are ones; outside distances from the masks; images are noise.
    """
    import jax  # pylint: disable=import-outside-toplevel
    import numpy as np  # pylint: disable=import-outside-toplevel
    from data_builders import cameras  # pylint: disable=import-outside-toplevel
    from maskpose_jax import input_pipeline  # pylint: disable=import-outside-toplevel
    from maskpose_jax import render  # pylint: disable=import-outside-toplevel

    rng = np.random.default_rng(seed)
    rig = cameras.h36m_rig("S1")
    rig = [rig[v % len(rig)] for v in range(num_views)]
    intrinsics_Vx3x3 = np.stack([c.intrinsics for c in rig])
    extrinsics_Vx3x4 = np.stack([c.extrinsics for c in rig])
    fields = {k: [] for k in ("image", "mask", "weight", "intrinsics", "extrinsics", "crop",
                              "distortion")}
    keypoints = []
    for _ in range(batch_size):
        angle = rng.uniform(0, 2 * np.pi)
        rotation = np.array([[np.cos(angle), -np.sin(angle), 0],
                             [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
        joints_world_Jx3 = (np.asarray(_STANDING_WORLD_Jx3, np.float64)
                            + rng.normal(0, 30, (len(_STANDING_WORLD_Jx3), 3))) @ rotation.T
        joints_world_Jx3[:, :2] += rng.uniform(-500, 500, 2)
        crops, views_kp = [], []
        for intrinsics, extrinsics in zip(intrinsics_Vx3x3, extrinsics_Vx3x4):
            cam_Jx3 = joints_world_Jx3 @ extrinsics[:, :3].T + extrinsics[:, 3]
            uv_Jx2 = cam_Jx3[:, :2] / cam_Jx3[:, 2:] * np.diag(intrinsics)[:2] + intrinsics[:2, 2]
            center, side = (uv_Jx2.min(0) + uv_Jx2.max(0)) / 2, 1.3 * np.ptp(uv_Jx2, 0).max()
            scale = image_size / side
            crop_2x3 = np.array([[scale, 0, (side / 2 - center[0]) * scale - 0.5],
                                 [0, scale, (side / 2 - center[1]) * scale - 0.5]])
            crop_uv_Jx2 = uv_Jx2 @ crop_2x3[:, :2].T + crop_2x3[:, 2]
            views_kp.append(-1.0 + 2.0 * crop_uv_Jx2 / (image_size - 1))
            crops.append(crop_2x3)
        keypoints.append(views_kp)
        fields["crop"].append(np.stack(crops))
        fields["intrinsics"].append(intrinsics_Vx3x3)
        fields["extrinsics"].append(extrinsics_Vx3x4)
        fields["distortion"].append(np.zeros((num_views, 5)))
    keypoints_BxVxJx2 = np.asarray(keypoints, np.float32)
    draw = jax.jit(jax.vmap(jax.vmap(lambda k: render.skeleton_mask(k, image_size, 2e-2))))
    masks = (np.asarray(draw(keypoints_BxVxJx2)) > 0.3).astype(np.float32)
    batch = {k: np.asarray(v, np.float32) for k, v in fields.items() if v}
    batch["mask"] = masks
    batch["weight"] = np.ones_like(masks)
    batch["outside_distance"] = np.stack([np.stack([input_pipeline.outside_distance(m)
                                                    for m in views]) for views in masks])
    batch["image"] = rng.integers(0, 256, masks.shape + (3,), dtype=np.uint8)
    return batch


def _scope_of(op_name, scopes):
    """The innermost of `scopes` in an op_name path, or None."""
    found = None
    for part in op_name.split("/"):
        core = re.sub(r"^(?:\w+\()+", "", part).rstrip(")")  # "transpose(jvp(detector))"
        if core in scopes:
            found = core
    return found


def instruction_scopes(hlo_text, scopes=SCOPES):
    """Labels each HLO instruction of a compiled module with one of `scopes`, or None (other).

    An instruction's label is the innermost scope in its `op_name` metadata; a fusion without
    metadata takes the majority of its fused ops. Ops that XLA's passes create without metadata
    (layout copies, reversed kernels and rewritten convolutions of the backward pass) take the
    majority label of their labelled operands (else users), breadth-first.

    Returns:
        ({instruction: scope or None}, {instructions labelled from neighbours}).
    """
    computations, current, lines = {}, None, {}
    for line in hlo_text.splitlines():
        header = re.match(r"^(?:ENTRY )?%([\w.\-]+) ", line)
        if header and line.rstrip().endswith("{"):
            current = header.group(1)
            computations[current] = []
            continue
        match = re.match(r"^\s*(?:ROOT )?%([\w.\-]+) = (.*)$", line)
        if match and current is not None:
            computations[current].append(match.group(1))
            lines[match.group(1)] = match.group(2)

    labels, unknown = {}, set()
    operands, users = collections.defaultdict(set), collections.defaultdict(set)
    for name, rest in lines.items():
        # Parameters, constants (shared after CSE) and tuple plumbing carry no scope and vote
        # for none.
        if re.match(r"\S+ (?:parameter|constant|get-tuple-element|tuple)\(", rest):
            continue
        op_name = re.search(r'op_name="([^"]*)"', rest)
        called = re.search(r"calls=%([\w.\-]+)", rest)
        if op_name:
            labels[name] = _scope_of(op_name.group(1), scopes)
        elif called:
            inner = [re.search(r'op_name="([^"]*)"', lines[n])
                     for n in computations[called.group(1)]]
            votes = collections.Counter(_scope_of(m.group(1), scopes) for m in inner if m)
            if votes:
                labels[name] = votes.most_common(1)[0][0]
        if name not in labels:
            unknown.add(name)
        operand_list = next((m.group(1) for m in re.finditer(r"[\w\-]+\(([^()]*)\)", rest)
                             if m.group(1).lstrip().startswith("%") or not m.group(1)), "")
        for operand in re.findall(r"%([\w.\-]+)", operand_list):
            operands[name].add(operand)
            users[operand].add(name)
    propagated = set()
    # Breadth-first, each round labelling the ops next to labelled ones; from operands first (a
    # backward op's inputs come from its own scope, while a weight gradient's users are the
    # optimizer and the gradient norm), from users only where no operand has a label.
    for neighbours in (operands, users, operands, users):
        while True:
            new = {}
            for name in unknown - propagated:
                votes = collections.Counter(labels[n] for n in neighbours[name] if n in labels)
                if votes:  # majority; a tie goes to a scope rather than to "other"
                    new[name] = max(votes, key=lambda label: (votes[label], label is not None))
            if not new:
                break
            labels.update(new)
            propagated.update(new)
    return labels, propagated


def profile_split(trace_dir, hlo_text, module_name):
    """Sums op durations of the traced `module_name` by scope.

    Returns:
        ({scope or "other": µs}, number of op events, µs of ops labelled from neighbours).

    Control-flow thunks (while, conditional, call) are left out: the ops inside them are
    reported as events of their own.
    """
    paths = glob.glob(os.path.join(trace_dir, "plugins", "profile", "*", "*.trace.json.gz"))
    if not paths:
        raise FileNotFoundError(f"no *.trace.json.gz under {trace_dir}/plugins/profile")
    with gzip.open(max(paths, key=os.path.getmtime)) as f:
        events = json.load(f)["traceEvents"]
    processes = {e["pid"]: e["args"].get("name", "") for e in events
                 if e.get("ph") == "M" and e.get("name") == "process_name"}
    device_pids = {pid for pid, name in processes.items() if name.startswith("/device:")}
    control = {m.group(1) for m in re.finditer(
        r"%([\w.\-]+) = [^\n]*? (?:while|conditional|call)\(", hlo_text)}
    scopes, propagated = instruction_scopes(hlo_text)
    totals, count, from_neighbours = collections.Counter(), 0, 0.0
    for event in events:
        args = event.get("args", {})
        op = args.get("hlo_op")
        if event.get("ph") != "X" or not op or op in control:
            continue
        if args.get("hlo_module", module_name) != module_name:
            continue
        if device_pids and event["pid"] not in device_pids:
            continue  # on accelerators, the device's kernel events, not the host's launches
        totals[scopes.get(op) or "other"] += float(event["dur"])
        from_neighbours += float(event["dur"]) if op in propagated else 0.0
        count += 1
    return totals, count, from_neighbours


def main(argv):
    del argv
    # Imported here so that `--help` and flag errors do not wait for JAX.
    import jax  # pylint: disable=import-outside-toplevel
    from jax import monitoring  # pylint: disable=import-outside-toplevel

    from benchmarks import render as render_benchmark  # pylint: disable=import-outside-toplevel
    from maskpose_jax import cascade  # pylint: disable=import-outside-toplevel
    from maskpose_jax import factory  # pylint: disable=import-outside-toplevel
    from maskpose_jax import sharding  # pylint: disable=import-outside-toplevel
    from maskpose_jax import train_step as train_step_lib  # pylint: disable=import-outside-toplevel

    compile_events = collections.defaultdict(list)
    monitoring.register_event_duration_secs_listener(
        lambda event, seconds, **kwargs: compile_events[event].append(seconds)
        if event in _COMPILE_EVENTS else None)

    config = experiment_flags.config()
    platform = jax.default_backend()
    batch_size = _BATCH.value or (2 if platform == "cpu" else 32)
    image_size = _IMAGE_SIZE.value or int(config.data.options.get("image_size", 64))
    num_views = _VIEWS.value or (len(config.data.views) or 4)
    mesh = sharding.make_mesh()
    print(f"jax {jax.__version__}, {len(jax.devices())} × {jax.devices()[0].device_kind} "
          f"({platform}), {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print(f"config {config.data.name} (variant {config.variant}): "
          f"ResNet-{config.model.resnet_depth} width {config.model.width}, "
          f"{config.model.depth_bins} depth bins, {config.model.dtype}; "
          f"batch {batch_size} × {num_views} views × {image_size}²", flush=True)

    detector, physique = factory.create_models(config)
    optimizer = cascade.make_optimizer(config.stages, config.train)
    state = factory.init_state(config, detector, physique, optimizer, image_size, mesh)
    train_step = train_step_lib.make_train_step(config, detector, physique, optimizer, image_size,
                                                mesh)
    batch = sharding.shard_batch(synthetic_batch(batch_size, num_views, image_size), mesh)
    jax.block_until_ready((state, batch))

    compile_events.clear()  # from here on: the train step's own compilation
    start = time.perf_counter()
    state, metrics = train_step(state, batch)
    jax.block_until_ready(metrics)
    first_call_s = time.perf_counter() - start
    compile_s = {e: sum(v) for e, v in compile_events.items()}
    for _ in range(_WARMUP.value):
        state, metrics = train_step(state, batch)
    jax.device_get(metrics)
    compiles_before = len(compile_events["/jax/core/compile/backend_compile_duration"])

    history, pending = [], None
    start = time.perf_counter()
    with jax.transfer_guard("disallow"):
        for _ in range(_STEPS.value):
            state, metrics = train_step(state, batch)
            if pending is not None:
                with jax.transfer_guard("allow"):  # step k's metrics, read after k+1 dispatched
                    history.append(jax.device_get(pending))
            pending = metrics
        with jax.transfer_guard("allow"):
            history.append(jax.device_get(pending))
    step_s = (time.perf_counter() - start) / _STEPS.value

    recompiles = len(compile_events["/jax/core/compile/backend_compile_duration"]) - compiles_before
    cache_size = train_step._cache_size()  # pylint: disable=protected-access
    if cache_size != 1 or recompiles:
        raise RuntimeError(f"the train step recompiled: cache size {cache_size}, "
                           f"{recompiles} XLA compiles after warm-up")
    if not all(bool(h["finite"]) for h in history):
        raise RuntimeError(f"non-finite loss in the timed steps: {history}")

    trace_dir = tempfile.mkdtemp(prefix="train_step_trace_")
    if _PROFILE_STEPS.value:
        with jax.profiler.trace(trace_dir):
            for _ in range(_PROFILE_STEPS.value):
                state, metrics = train_step(state, batch)
            jax.block_until_ready(metrics)

    # The executable of the first call, from JAX's compilation cache (not a second compile).
    compiled = train_step.lower(state, batch).compile()
    memory = compiled.memory_analysis()
    stats = jax.devices()[0].memory_stats() or {}

    examples_s = batch_size / step_s
    print(f"\nthroughput: {examples_s:.2f} examples/s ({1e3 * step_s:.0f} ms a step of "
          f"{batch_size}, {1e3 / examples_s:.0f} ms per example), {_STEPS.value} steps, loss "
          f"{float(history[-1]['loss']):.4g}")
    print(f"compile: {sum(compile_s.values()):.1f} s (trace "
          f"{compile_s.get(_COMPILE_EVENTS[0], 0):.1f} s, lower "
          f"{compile_s.get(_COMPILE_EVENTS[1], 0):.1f} s, XLA "
          f"{compile_s.get(_COMPILE_EVENTS[2], 0):.1f} s); first call {first_call_s:.1f} s; "
          f"compiled once (cache size {cache_size}, {recompiles} compiles after warm-up)")
    parts = []
    if memory is not None:
        total_mb = (memory.temp_size_in_bytes + memory.argument_size_in_bytes
                    + memory.output_size_in_bytes - memory.alias_size_in_bytes) / 2**20
        parts.append(f"compiled step {total_mb:.0f} MB per device (temporaries "
                     f"{memory.temp_size_in_bytes / 2**20:.0f}, arguments "
                     f"{memory.argument_size_in_bytes / 2**20:.0f}, outputs "
                     f"{memory.output_size_in_bytes / 2**20:.0f}, donated "
                     f"{memory.alias_size_in_bytes / 2**20:.0f} MB)")
    parts.append(f"process peak RSS {render_benchmark.peak_rss_mb():.0f} MB")
    if "peak_bytes_in_use" in stats:
        parts.append(f"device peak {stats['peak_bytes_in_use'] / 2**20:.0f} MB")
    print("memory: " + "; ".join(parts))

    if _PROFILE_STEPS.value:
        module = "jit_" + train_step.__name__
        totals, count, from_neighbours = profile_split(trace_dir, compiled.as_text(), module)
        if not count:
            raise RuntimeError(f"the profile in {trace_dir} has no op events of {module} that "
                               f"carry an hlo_op: no split by scope on this backend")
        total = sum(totals.values())
        print(f"\nprofile ({_PROFILE_STEPS.value} steps, {count} op events of {module}; "
              f"op time {total / 1e3 / _PROFILE_STEPS.value:.0f} ms a step, summed over "
              f"{len(jax.devices())} device(s), against "
              f"{1e3 * step_s:.0f} ms wall; {100 * from_neighbours / max(total, 1):.0f}% of it in "
              f"ops without metadata, labelled from their operands and users):")
        print("| part | ms per step | share |\n|---|---|---|")
        for scope in SCOPES + ("other",):
            ms = totals.get(scope, 0.0) / 1e3 / _PROFILE_STEPS.value
            print(f"| {scope} | {ms:.1f} | {100 * totals.get(scope, 0.0) / max(total, 1):.1f}% |")
    shutil.rmtree(trace_dir, ignore_errors=True)
    return 0


def _parse_flags(argv):
    """`experiments.flags.parse_flags`, with `--config=h36m.py` when no config is given."""
    if not any(a == "--config" or a.startswith("--config=") for a in argv[1:]):
        argv = list(argv) + ["--config=h36m.py"]
    return experiment_flags.parse_flags(argv)


if __name__ == "__main__":
    sys.exit(app.run(main, flags_parser=_parse_flags))
