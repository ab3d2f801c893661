"""Converts motion-capture clips (BVH, DeepMimic) to compact `.npz` clips of our 17 joints at 30 Hz.

    python -m data_builders.synthetic.convert_mocap SRC_FILES_OR_DIR... \
        --out data_builders/assets/mocap/cmu_npz [--catalog CATALOG.json] [--fps 30]

Each clip is read with the project's readers (`motion.read_bvh`, `motion.read_deepmimic`), so it
comes out in millimetres, world frame (Z up), in `maskpose_jax.skeleton` order. Then:
1. lengths are rescaled when the catalog gives the file's length unit (`length_unit_mm`: 10 for
   the cm of the Daz-friendly CMU release; `read_bvh` assumes CMU's 1/0.45 inch);
2. the frame rate is overridden when the catalog gives one (`fps`: files that store 120 Hz frame
   times for 60 Hz captures);
3. a leading T-pose frame is dropped (the cgspeed releases prepend one; `read_bvh` already drops
   it for the MotionBuilder naming), then the catalog's `trim_start_s` seconds (the Daz-friendly
   release blends out of its T-pose over the next ~4 frames at 120 Hz);
4. the clip is resampled to `--fps` (`motion.resample`) and checked: finite, every bone of every
   frame at most `MAX_BONE_MM`, every bone's mean length at least `MIN_BONE_MM` (`retarget`
   needs directions), standing head height within `HEAD_HEIGHT_RANGE_MM`.
Every input is converted and checked before anything is written: one bad file stops the run with
an error naming it. Each clip becomes `<out>/<name>.npz` with `joints_world_TxJx3` (float32, mm),
`fps` (float) and `source` (str); `<out>/clips.json` (merged with an existing one) and
`<out>/CLIPS.md` list every clip.

The catalog (JSON) names the clips and says where they come from:
    {"sources": {KEY: {"repository", "commit", "licence", "notes"}},
     "clips": {NAME: {"source": KEY, "path", "category", "description", "fps"?,
                      "length_unit_mm"?, "trim_start_s"?, "exclude"?}}}
An input file belongs to the catalog clip whose `path` (the file's path in its repository) ends
its own path; a file with no catalog clip is named by its stem, category "unknown"; a clip with
`"exclude": true` is skipped (kept in the catalog to say why).
"""

import argparse
import json
import pathlib
import sys

import numpy as np

from data_builders.synthetic import motion
from maskpose_jax import skeleton

FPS = 30.0
MAX_BONE_MM = 1000.0
MIN_BONE_MM = 20.0
# Height of the `head` joint above the lowest ankle, plus the ankle's 80 mm above the sole, in
# the clip's upright frames (95th percentile over frames). `head` sits ~10 cm below the crown
# (CMU: Head's End Site; Daz: the eyes), so a 1.6-1.8 m adult measures ~1.45-1.75 m.
HEAD_HEIGHT_RANGE_MM = (1300.0, 2000.0)
_ANKLE_HEIGHT_MM = 80.0
DEFAULT_URDF = (pathlib.Path(__file__).resolve().parents[1] / "assets" / "mocap" / "deepmimic"
                / "humanoid.urdf")
CMU_ACKNOWLEDGEMENT = ("The data used in this project was obtained from mocap.cs.cmu.edu. "
                       "The database was created with funding from NSF EIA-0196217.")
_J = skeleton.JOINT_INDEX
_BONE_PARENTS = np.array(skeleton.PARENTS[1:])


def bone_lengths_TxB(joints_TxJx3):
    """Length (mm) of every link (PARENTS[j], j), j = 1..J-1, in every frame. Returns Tx(J-1)."""
    joints = np.asarray(joints_TxJx3, np.float64)
    return np.linalg.norm(joints[:, 1:] - joints[:, _BONE_PARENTS], axis=-1)


def is_t_pose(joints_Jx3):
    """Whether one frame (mm, Z up) is a T-pose: both arms straight out sideways, level with
    the shoulders (wrist within 20% of the arm's length of shoulder height, shoulder-to-wrist
    distance over 90% of the arm's length), and both legs straight (hip-to-ankle over 95% of
    the leg's length)."""
    x = np.asarray(joints_Jx3, np.float64)
    for shoulder, elbow, wrist in (("l_shoulder", "l_elbow", "l_wrist"),
                                   ("r_shoulder", "r_elbow", "r_wrist")):
        s, e, w = x[_J[shoulder]], x[_J[elbow]], x[_J[wrist]]
        arm = np.linalg.norm(e - s) + np.linalg.norm(w - e)
        if abs(w[2] - s[2]) > 0.2 * arm or np.linalg.norm(w - s) < 0.9 * arm:
            return False
    for hip, knee, ankle in (("l_hip", "l_knee", "l_ankle"), ("r_hip", "r_knee", "r_ankle")):
        h, k, a = x[_J[hip]], x[_J[knee]], x[_J[ankle]]
        if np.linalg.norm(a - h) < 0.95 * (np.linalg.norm(k - h) + np.linalg.norm(a - k)):
            return False
    return True


def drop_t_pose(joints_TxJx3):
    """The clip without its first frame if that frame is a T-pose (and another follows).
    Returns (joints_TxJx3, dropped: bool)."""
    if len(joints_TxJx3) > 1 and is_t_pose(joints_TxJx3[0]):
        return joints_TxJx3[1:], True
    return joints_TxJx3, False


def standing_head_height_mm(joints_TxJx3):
    """95th percentile over frames of head height above the lower ankle, plus 80 mm (mm)."""
    x = np.asarray(joints_TxJx3, np.float64)
    above_ankle_T = x[:, _J["head"], 2] - x[:, [_J["l_ankle"], _J["r_ankle"]], 2].min(axis=1)
    return float(np.percentile(above_ankle_T, 95) + _ANKLE_HEIGHT_MM)


def check_clip(joints_TxJx3):
    """Problems of a converted clip (mm, world frame); an empty list when it is plausible."""
    x = np.asarray(joints_TxJx3)
    if x.ndim != 3 or x.shape[1:] != (skeleton.NUM_JOINTS, 3) or len(x) < 2:
        return [f"joints must be Tx{skeleton.NUM_JOINTS}x3 with T >= 2, got {x.shape}"]
    if not np.all(np.isfinite(x)):
        return ["non-finite joint positions"]
    problems = []
    lengths = bone_lengths_TxB(x)
    if lengths.max() > MAX_BONE_MM:
        t, b = np.unravel_index(lengths.argmax(), lengths.shape)
        problems.append(f"bone to {skeleton.JOINT_NAMES[b + 1]} is {lengths[t, b]:.0f} mm long "
                        f"in frame {t} (max {MAX_BONE_MM:.0f} mm)")
    short_B = np.flatnonzero(lengths.mean(axis=0) < MIN_BONE_MM)
    short = [skeleton.JOINT_NAMES[b + 1] for b in short_B]
    if short:
        problems.append(f"bones to {short} are shorter than {MIN_BONE_MM:.0f} mm on average")
    head = standing_head_height_mm(x)
    low, high = HEAD_HEIGHT_RANGE_MM
    if not low <= head <= high:
        problems.append(f"standing head height {head:.0f} mm is outside [{low:.0f}, {high:.0f}] "
                        "mm (wrong length unit?)")
    return problems


def read_source(path, entry=None, urdf_path=DEFAULT_URDF):
    """Reads one clip at its own rate with the project's readers, applying the catalog entry's
    `length_unit_mm` (BVH only) and `fps`.

    Args:
      path: a `.bvh` file, or a DeepMimic `.txt`/`.json` clip (FK with `urdf_path`).
      entry: the clip's catalog entry (dict) or None.
    Returns:
      Motion, mm, world frame (Z up).
    Raises:
      ValueError naming the file if it is malformed or of an unknown kind.
    """
    path = pathlib.Path(path)
    entry = entry or {}
    suffix = path.suffix.lower()
    if suffix == ".bvh":
        clip = motion.read_bvh(path)
        if "length_unit_mm" in entry:
            clip = clip._replace(joints_world_TxJx3=clip.joints_world_TxJx3
                                 * (float(entry["length_unit_mm"]) / motion._CMU_UNIT_MM))
    elif suffix in (".txt", ".json"):
        clip = motion.read_deepmimic(path, urdf_path)
    else:
        raise ValueError(f"{path}: not a motion clip (.bvh, DeepMimic .txt/.json)")
    if "fps" in entry:
        clip = clip._replace(fps=float(entry["fps"]))
    return clip


def convert_clip(path, name, entry=None, fps=FPS, urdf_path=DEFAULT_URDF):
    """Reads, cleans, resamples and checks one clip.

    Returns:
      (joints_TxJx3 float32 mm at `fps`, info dict: frames, source_fps, t_pose_dropped,
      head_height_mm).
    Raises:
      ValueError naming the file if it is malformed or fails a check.
    """
    clip = read_source(path, entry, urdf_path)
    source_fps = clip.fps
    joints, dropped = drop_t_pose(clip.joints_world_TxJx3)
    trim = int(round(float((entry or {}).get("trim_start_s", 0.0)) * source_fps))
    if trim >= len(joints) - 1:
        raise ValueError(f"{path} ({name}): trim_start_s leaves fewer than 2 frames")
    clip = motion.resample(clip._replace(joints_world_TxJx3=joints[trim:]), fps)
    problems = check_clip(clip.joints_world_TxJx3)
    if problems:
        raise ValueError(f"{path} ({name}): " + "; ".join(problems))
    joints_TxJx3 = clip.joints_world_TxJx3.astype(np.float32)
    info = {"frames": int(len(joints_TxJx3)), "source_fps": float(source_fps),
            "t_pose_dropped": bool(dropped),
            "head_height_mm": round(standing_head_height_mm(joints_TxJx3), 1)}
    return joints_TxJx3, info


def find_sources(paths):
    """Clip files of `paths` (files kept as given; folders searched recursively for `.bvh`,
    `.txt` and `.json` files that start with a JSON object), sorted within each folder."""
    files = []
    for p in map(pathlib.Path, paths):
        if p.is_dir():
            for f in sorted(q for q in p.rglob("*") if q.is_file()):
                suffix = f.suffix.lower()
                if suffix == ".bvh" or (suffix in (".txt", ".json")
                                        and f.read_bytes()[:256].lstrip()[:1] == b"{"):
                    files.append(f)
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"no such file or folder {p}")
    return files


def match_catalog(path, catalog):
    """(name, entry) of the catalog clip whose `path` ends `path`; (stem, None) if none does.
    Raises ValueError naming the file if several do."""
    posix = pathlib.Path(path).resolve().as_posix()
    hits = [(name, e) for name, e in catalog.get("clips", {}).items()
            if posix.endswith("/" + e["path"].lstrip("/"))]
    if len(hits) > 1:
        raise ValueError(f"{path}: matches several catalog clips {[n for n, _ in hits]}")
    return hits[0] if hits else (pathlib.Path(path).stem, None)


def source_string(path, entry, catalog):
    """`repository@commit:path` for a catalog clip, else the file's path."""
    if not entry:
        return pathlib.Path(path).as_posix()
    src = catalog["sources"][entry["source"]]
    return f"{src['repository']}@{src['commit']}:{entry['path']}"


def convert(paths, out_dir, catalog=None, fps=FPS, urdf_path=DEFAULT_URDF):
    """Converts every clip of `paths` into `out_dir` (see the module docstring).

    Returns:
      dict {name: clips.json record} of the clips converted now.
    Raises:
      ValueError naming the first bad file (nothing is written then), or two inputs that
      give the same clip name.
    """
    catalog = catalog or {"sources": {}, "clips": {}}
    converted, records = {}, {}
    for path in find_sources(paths):
        name, entry = match_catalog(path, catalog)
        if (entry or {}).get("exclude"):
            continue
        if name in converted:
            raise ValueError(f"{path}: clip name {name!r} already given by {converted[name][0]}")
        joints_TxJx3, info = convert_clip(path, name, entry, fps, urdf_path)
        records[name] = {
            "category": (entry or {}).get("category", "unknown"),
            "description": (entry or {}).get("description", "unknown"),
            "frames": info["frames"], "fps": float(fps), "source": source_string(path, entry,
                                                                                 catalog),
            "source_fps": info["source_fps"], "t_pose_dropped": info["t_pose_dropped"],
            "head_height_mm": info["head_height_mm"]}
        converted[name] = (path, joints_TxJx3)
    if not converted:
        raise ValueError(f"no motion clips in {[str(p) for p in paths]}")
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, (_, joints_TxJx3) in converted.items():
        write_clip(out_dir / f"{name}.npz", joints_TxJx3, fps, records[name]["source"])
    index = read_index(out_dir)
    index.update(records)
    write_index(out_dir, index, catalog)
    return records


def write_clip(path, joints_TxJx3, fps, source):
    """Writes one clip: `joints_world_TxJx3` float32 mm, `fps` float64 scalar, `source` str."""
    np.savez_compressed(path, joints_world_TxJx3=np.asarray(joints_TxJx3, np.float32),
                        fps=np.float64(fps), source=np.str_(source))


def read_index(out_dir):
    """The clips.json of `out_dir` ({} if there is none)."""
    path = pathlib.Path(out_dir) / "clips.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def write_index(out_dir, index, catalog):
    """Writes `clips.json` (sorted by name) and `CLIPS.md` for `index` {name: record}."""
    out_dir = pathlib.Path(out_dir)
    index = dict(sorted(index.items()))
    (out_dir / "clips.json").write_text(json.dumps(index, indent=1) + "\n")
    (out_dir / "CLIPS.md").write_text(clips_markdown(index, catalog))


def clips_markdown(index, catalog):
    """CLIPS.md text: acknowledgement, sources with licences, frames per category, clip table."""
    total = sum(r["frames"] for r in index.values())
    lines = ["# Motion-capture clips (npz, 17 joints, mm, world Z up, 30 Hz)", "",
             f"{len(index)} clips, {total:,} frames at 30 Hz ({total / 30 / 60:.1f} min). "
             "Written by `python -m data_builders.synthetic.convert_mocap` (see its docstring); "
             "licences and notices in `NOTICE`.", "",
             "CMU acknowledgement: \"" + CMU_ACKNOWLEDGEMENT + "\"", "", "## Sources", ""]
    for key, src in sorted(catalog.get("sources", {}).items()):
        n = sum(1 for r in index.values() if r["source"].startswith(src["repository"] + "@"))
        lines.append(f"- `{key}`: {src['repository']} @ {src['commit'][:10]}, {n} clips. "
                     f"Licence: {src['licence']}. {src.get('notes', '')}".rstrip())
    lines += ["", "## Frames per category", "", "| category | clips | frames |", "|---|---:|---:|"]
    categories = sorted({r["category"] for r in index.values()})
    for c in categories:
        rs = [r for r in index.values() if r["category"] == c]
        lines.append(f"| {c} | {len(rs)} | {sum(r['frames'] for r in rs):,} |")
    lines += ["", "## Clips", "", "| clip | category | description | frames | source |",
              "|---|---|---|---:|---|"]
    for name, r in index.items():
        lines.append(f"| {name} | {r['category']} | {r['description']} | {r['frames']} | "
                     f"{r['source']} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    """CLI entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sources", nargs="+", help="clip files or folders (searched recursively)")
    parser.add_argument("--out", required=True, help="output folder of the npz clips")
    parser.add_argument("--catalog", help="JSON catalog naming the clips (module docstring)")
    parser.add_argument("--fps", type=float, default=FPS, help="output frame rate (Hz)")
    args = parser.parse_args(argv)
    catalog = json.loads(pathlib.Path(args.catalog).read_text()) if args.catalog else None
    records = convert(args.sources, args.out, catalog, args.fps)
    print(f"wrote {len(records)} clips, {sum(r['frames'] for r in records.values()):,} frames, "
          f"to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
