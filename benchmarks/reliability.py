"""Reliability sweep: kill -9 at random moments, bad inputs, a full and a read-only disk.

    python -m benchmarks.reliability [--kills=10] [--seed=0] [--root=/tmp/maskpose_reliability]

Everything runs on the tiny config (`experiments/configs/tiny.py`) and the builders' dummy data,
each command in a process of its own, as a user would run it. It prints:

1. Kills: an uninterrupted run of STEPS steps (a checkpoint every 3 steps, a val evaluation
   every 8) is timed; then `--kills` runs are each killed with SIGKILL at a random moment of that
   time (start-up, a step, a checkpoint write or an evaluation: the line the run printed last
   says which), resumed with the same command, and their final parameters compared with the
   uninterrupted run's. A run "lost something" if the resume fails or any parameter differs.
2. Bad inputs: each case, the command's exit status and the last line it printed; "named" means
   a non-zero exit whose message names the key, option, file or folder, with no Python traceback
   (or, for the skip cases, a zero exit that counts the skip).
3. A full disk and a read-only workdir (tmpfs mounts; root only, else reported as not run): the
   resumed run must fail with a clear error and leave the last good checkpoint readable.
"""

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 24
RUN_FLAGS = ("--config=tiny.py", f"--config.stages[0].steps={STEPS}",
             "--config.train.checkpoint_every=3", "--config.train.eval_every=8",
             "--config.train.image_every=0", "--config.train.log_every=1")
# Every command runs on the CPU; unbuffered, so that a killed run's log says where it was.
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}


def _python(args, timeout=900):
    done = subprocess.run([sys.executable, *args], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=timeout, check=False)
    return done.returncode, done.stdout + done.stderr


def _train_args(workdir, data_dir, *extra):
    return ["-m", "experiments.train", *RUN_FLAGS, f"--workdir={workdir}",
            f"--config.data.data_dir={data_dir}", *extra]


def _final_params(workdir, data_dir):
    """(step, flat parameters) of a run's latest checkpoint, read in this process."""
    import jax  # pylint: disable=import-outside-toplevel
    import numpy as np  # pylint: disable=import-outside-toplevel
    from experiments.configs import tiny  # pylint: disable=import-outside-toplevel
    from maskpose_jax import factory  # pylint: disable=import-outside-toplevel
    from maskpose_jax import sharding  # pylint: disable=import-outside-toplevel
    config = tiny.get_config()
    config.data.data_dir = data_dir
    config.stages[0].steps = STEPS
    state, _ = factory.restore_latest(config, workdir, sharding.make_mesh())
    return int(state.step), [np.asarray(x) for x in jax.tree.leaves(jax.device_get(state.params))]


def _phase(lines: list[str], workdir: str) -> str:
    """What a run was doing when killed: its last progress line, and an orbax temporary folder
    (a step being written) if there is one."""
    checkpoints = os.path.join(workdir, "checkpoints")
    names = os.listdir(checkpoints) if os.path.isdir(checkpoints) else []
    writing = any(not n.isdigit() for n in names if not n.startswith("."))
    progress = [line for line in lines if line.startswith(("step ", "  fits:", "fitting"))]
    if not progress or not progress[-1].startswith("step "):
        what = "start-up (template fits, compiling)"
    else:
        what = "evaluation" if "[eval]" in progress[-1] else "training"
        what += f" (last logged: step {progress[-1].split()[1].split('/')[0]})"
    return what + ("; a checkpoint being written" if writing else "")


def kills(root, data_dir, count, rng):
    straight = os.path.join(root, "straight")
    begin = time.time()
    code, out = _python(_train_args(straight, data_dir))
    total = time.time() - begin
    assert code == 0, out
    _, reference = _final_params(straight, data_dir)
    print(f"\n## Kills: uninterrupted run of {STEPS} steps took {total:.1f} s\n")
    print("| run | killed at (s) | what it was doing | resumed | parameters |")
    print("|---:|---:|---|---|---|")
    lost = 0
    for k in range(count):
        workdir = os.path.join(root, f"killed_{k}")
        shutil.rmtree(workdir, ignore_errors=True)
        moment = rng.uniform(0.05, 0.95) * total
        log_path = os.path.join(root, f"killed_{k}.log")
        with open(log_path, "w") as log:
            process = subprocess.Popen([sys.executable, *_train_args(workdir, data_dir)],
                                       cwd=REPO, env=ENV, stdout=log, stderr=subprocess.STDOUT)
            time.sleep(moment)
            phase = _phase(open(log_path).read().splitlines(), workdir)
            process.send_signal(signal.SIGKILL)
            process.wait()
        code, out = _python(_train_args(workdir, data_dir))
        same = False
        if code == 0:
            step, params = _final_params(workdir, data_dir)
            same = step == STEPS and all((a == b).all() for a, b in zip(params, reference))
        lost += not (code == 0 and same)
        print(f"| {k} | {moment:.1f} | {phase} | {'yes' if code == 0 else 'FAILED'} | "
              f"{'identical' if same else 'DIFFERENT'} |", flush=True)
    print(f"\nruns that lost anything: {lost} of {count}")
    return straight


def _named(code, out, *needles):
    """"named": a non-zero exit whose message names `needles`, without a traceback."""
    if code == 0:
        return "exit 0 (no error)"
    named = all(n in out for n in needles)
    if "Traceback (most recent call last)" in out:
        return ("named, after a traceback" if named
                else "TRACEBACK, not naming " + ", ".join(needles))
    return "named" if named else "error, not naming " + ", ".join(needles)


def _last_line(out):
    lines = [line for line in out.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "").strip()[:150].replace("|", "/")


def bad_inputs(root, data_dir, straight):
    rows = []
    dummy = os.path.join(REPO, "data_builders", "synthetic", "dummy_data")

    code, out = _python(_train_args(os.path.join(root, "bad_key"), data_dir,
                                    "--config.train.nope=1"))
    rows.append(("unknown config key (--config.train.nope=1)", code, _named(code, out, "nope"),
                 out))
    code, out = _python(["-m", "data_builders.build", "synthetic", "--data_dir=" + root,
                         "--colour=1"])
    rows.append(("unknown builder option (--colour=1)", code, _named(code, out, "colour"), out))
    missing = os.path.join(root, "no_such_folder")
    code, out = _python(["-m", "data_builders.build", "synthetic", "--data_dir=" + root,
                         f"--mocap_dir={missing}"])
    rows.append(("missing mocap folder", code, _named(code, out, missing), out))

    bad_clips = os.path.join(root, "bad_clips")
    shutil.rmtree(bad_clips, ignore_errors=True)
    shutil.copytree(dummy, bad_clips)
    with open(os.path.join(bad_clips, "131_01.bvh"), "w") as f:
        f.write("HIERARCHY\nROOT Hips\n{\n  OFFSET 0 0\n")  # truncated
    code, out, finished = _build("synthetic", os.path.join(root, "bad_clips_tfds"),
                                 dict(mocap_dir=bad_clips, image_size=32, num_views=2))
    rows.append(("a truncated BVH file in the mocap folder", code,
                 _named(code, out, "131_01.bvh") + ("" if not finished else
                                                    "; a FINISHED dataset folder was left"), out))

    code, out = _python(["-m", "experiments.evaluate", "--config=tiny.py",
                         f"--workdir={os.path.join(root, 'never_trained')}",
                         f"--config.data.data_dir={data_dir}"])
    rows.append(("evaluate a workdir without checkpoint", code,
                 _named(code, out, "no checkpoint"), out))

    corrupt = os.path.join(root, "corrupt")
    shutil.rmtree(corrupt, ignore_errors=True)
    shutil.copytree(straight, corrupt)
    latest = os.path.join(corrupt, "checkpoints", str(STEPS))
    for folder, _, files in os.walk(os.path.join(latest, "state")):
        for name in files:
            path = os.path.join(folder, name)
            if os.path.getsize(path) > 64:
                with open(path, "r+b") as f:
                    f.truncate(os.path.getsize(path) // 2)
    code, out = _python(["-m", "experiments.evaluate", "--config=tiny.py",
                         f"--config.stages[0].steps={STEPS}", f"--workdir={corrupt}",
                         f"--config.data.data_dir={data_dir}"])
    rows.append(("evaluate a checkpoint whose files are truncated", code,
                 _named(code, out, os.path.join("checkpoints", str(STEPS))), out))
    code, out = _python(_train_args(corrupt, data_dir, f"--config.stages[0].steps={STEPS + 6}"))
    rows.append(("resume training from that checkpoint", code,
                 _named(code, out, os.path.join("checkpoints", str(STEPS))), out))

    rows += real_builders(root)

    print("\n## Bad inputs\n")
    print("| case | exit | outcome | last line printed |")
    print("|---|---:|---|---|")
    for case, code, outcome, out in rows:
        print(f"| {case} | {code} | {outcome} | {_last_line(out)} |")


def _build(name, data_dir, options):
    """`python -m data_builders.build NAME` with these options; also whether a finished dataset
    folder (a version folder outside tfds's temporary ones) was left in `data_dir`."""
    shutil.rmtree(data_dir, ignore_errors=True)
    code, out = _python(["-m", "data_builders.build", name, f"--data_dir={data_dir}",
                         *(f"--{k}={v}" for k, v in options.items())])
    finished = [d for _, dirs, _ in os.walk(data_dir) for d in dirs if d[:1].isdigit()]
    return code, out, bool(finished)


def real_builders(root):
    """The real-data builders on broken copies of their dummy releases, from the command line:
    Human3.6M's faults (`make_dummy_data.BAD`: truncated and missing video, a mask of another
    size, an empty mask, poses and video of different lengths), in error and skip mode, and
    MPI-INF-3DHP calibrations with a NaN and a singular camera."""
    from data_builders.h36m import make_dummy_data  # pylint: disable=import-outside-toplevel
    rows = []
    h36m_root = os.path.join(root, "h36m_bad")
    shutil.rmtree(h36m_root, ignore_errors=True)
    make_dummy_data.make_bad_release(h36m_root)
    base = dict(root_dir=h36m_root, image_size=32, train_subjects="S1", test_subjects="S9",
                frame_stride=2)
    for fault, (options, message) in make_dummy_data.BAD.items():
        code, out, finished = _build("h36m", os.path.join(root, "h36m_tfds"),
                                     {**base, **options})
        rows.append((f"h36m: {fault}", code, _named(code, out, message)
                     + ("; a FINISHED dataset folder was left" if finished else ""), out))
    code, out, finished = _build("h36m", os.path.join(root, "h36m_tfds"),
                                 {**base, "on_bad_input": "skip"})
    skips = [line for line in out.splitlines() if ": skipped (" in line]
    named = sum(h36m_root in line for line in skips)
    rows.append(("h36m: all of them, on_bad_input=skip", code,
                 f"built; {len(skips)} skips logged, {named} naming a file of the release"
                 if code == 0 and finished else "FAILED", out))

    mpi_dummy = os.path.join(REPO, "data_builders", "mpi_inf_3dhp", "dummy_data")
    for fault, old, new in (("NaN", "70.204359375 ", "nan "),
                            ("singular (zero focal length)", "70.204359375 ", "0 ")):
        mpi_root = os.path.join(root, "mpi_bad")
        shutil.rmtree(mpi_root, ignore_errors=True)
        shutil.copytree(mpi_dummy, mpi_root)
        calibration = os.path.join(mpi_root, "S1", "Seq1", "camera.calibration")
        with open(calibration) as f:
            text = f.read()
        with open(calibration, "w") as f:
            f.write(text.replace(old, new, 1))
        code, out, finished = _build("mpi_inf_3dhp", os.path.join(root, "mpi_tfds"), dict(
            root_dir=mpi_root, train_subjects="S1,S2", train_sequences="Seq1", cameras="0,2,8",
            frame_stride=2, image_size=32, test_sequences="TS1,TS5",
            test_cameras=os.path.join(mpi_root, "test_cameras.pkl")))
        rows.append((f"mpi_inf_3dhp: a {fault} camera in camera.calibration", code,
                     _named(code, out, calibration, "camera 0")
                     + ("; a FINISHED dataset folder was left" if finished else ""), out))
    return rows


def disks(root, data_dir, straight):
    print("\n## A full disk and a read-only workdir\n")
    if os.geteuid() != 0:
        print("not run: mounting a tmpfs needs root")
        return
    print("| case | exit | last line printed | last good checkpoint |")
    print("|---|---:|---|---|")
    # Room for the run as it is and a little more, not for another checkpoint.
    used_kb = int(subprocess.run(["du", "-sk", straight], capture_output=True, text=True,
                                 check=True).stdout.split()[0])
    for case, options in (("full disk", f"size={used_kb + 256}k"), ("read-only workdir", None)):
        mount = os.path.join(root, "mnt_" + case.split()[0])
        os.makedirs(mount, exist_ok=True)
        subprocess.run(["umount", mount], capture_output=True, check=False)
        subprocess.run(["mount", "-t", "tmpfs", "-o", options or "size=64m", "tmpfs", mount],
                       check=True)
        workdir = os.path.join(mount, "run")
        try:
            shutil.copytree(straight, workdir)
            if options is None:
                subprocess.run(["mount", "-o", "remount,ro", mount], check=True)
            code, out = _python(_train_args(workdir, data_dir,
                                            f"--config.stages[0].steps={STEPS * 4}",
                                            "--config.train.checkpoint_every=1"))
            try:
                step, _ = _final_params(workdir, data_dir)
                intact = f"step {step} readable"
            except Exception as error:  # pylint: disable=broad-except
                intact = f"UNREADABLE ({type(error).__name__})"
            outcome = _named(code, out, workdir)
            print(f"| {case} | {code} | {outcome}: {_last_line(out)} | {intact} |", flush=True)
        finally:
            subprocess.run(["umount", mount], capture_output=True, check=False)


def main():
    from absl import logging  # pylint: disable=import-outside-toplevel
    logging.set_verbosity(logging.ERROR)  # tfds's notes on every builder it opens
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default="/tmp/maskpose_reliability")
    parser.add_argument("--skip_kills", action="store_true", help="only the input and disk cases")
    args = parser.parse_args()
    os.makedirs(args.root, exist_ok=True)
    data_dir = os.path.join(args.root, "tfds")
    rng = random.Random(args.seed)
    if args.skip_kills:
        straight = os.path.join(args.root, "straight")
        if not os.path.isdir(straight):
            code, out = _python(_train_args(straight, data_dir))
            assert code == 0, out
    else:
        straight = kills(args.root, data_dir, args.kills, rng)
    bad_inputs(args.root, data_dir, straight)
    disks(args.root, data_dir, straight)


if __name__ == "__main__":
    main()
