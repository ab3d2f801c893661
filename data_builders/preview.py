"""Draws a picture grid of a built dataset: per view the image, the ground-truth skeleton over it,
the mask and the weight map.

    python -m data_builders.preview synthetic --split test --count 8 --out preview.png \\
        [--data_dir DIR] [--option=value ...]

The skeleton is the ground truth projected through the stored camera and crop affine: it lands on
the body only if the cameras, crops and joints of the dataset agree. Left limbs are drawn blue,
right limbs red, the trunk and head white.
"""

import argparse
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import data_builders  # noqa: E402
from maskpose_jax import geometry  # noqa: E402
from maskpose_jax import input_pipeline  # noqa: E402
from maskpose_jax import skeleton  # noqa: E402
from maskpose_jax import visualization  # noqa: E402

_COLORS = {"left": visualization.LEFT_COLOR, "right": visualization.RIGHT_COLOR,
           "trunk": visualization.TRUNK_COLOR}


def joints_in_crop(example: dict, view: int) -> np.ndarray:
    """Ground-truth joints of `example` in crop pixels of `view` (J×2)."""
    px_Jx2 = geometry.project(example["joints_world"], example["intrinsics"][view],
                              example["extrinsics"][view], example["distortion"][view])
    return np.asarray(geometry.apply_affine(example["crop"][view], px_Jx2))


def draw(examples: list[dict], out: str) -> None:
    """Saves the grid of `examples` (decoded, see `input_pipeline.decode_example`) to `out`."""
    num_views = examples[0]["image"].shape[0]
    cols = 4 * num_views
    fig, axes = plt.subplots(len(examples), cols, figsize=(1.3 * cols, 1.4 * len(examples)),
                             squeeze=False)
    for row, example in enumerate(examples):
        for view in range(num_views):
            image = example["image"][view]
            uv_Jx2 = joints_in_crop(example, view)
            panels = (image, image, example["mask"][view], example["weight"][view])
            for k, panel in enumerate(panels):
                ax = axes[row, 4 * view + k]
                ax.imshow(panel, cmap=None if k < 2 else "gray" if k == 2 else "viridis",
                          interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if k == 1:
                    for (parent, child), side in zip(skeleton.LIMBS, visualization.LIMB_SIDES):
                        ax.plot(uv_Jx2[[parent, child], 0], uv_Jx2[[parent, child], 1],
                                color=np.asarray(_COLORS[side]) / 255.0, linewidth=1.2)
                    ax.set_xlim(-0.5, image.shape[1] - 0.5)
                    ax.set_ylim(image.shape[0] - 0.5, -0.5)
                if row == 0:
                    ax.set_title(f"v{view} " + ("image", "truth", "mask", "weight")[k], fontsize=7)
            axes[row, 0].set_ylabel(f"{example['action']}\n{example['subject']} f{example['frame']}",
                                    fontsize=6)
    fig.tight_layout(pad=0.2)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m data_builders.preview",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help=f"one of: {', '.join(sorted(data_builders.BUILDERS))}")
    parser.add_argument("--split", default="test")
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--out", default="preview.png")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--shuffle_seed", type=int, default=0, help="which examples are drawn")
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    try:
        options = data_builders.parse_cli_options(args.dataset, rest)
        builder = data_builders.make_builder(args.dataset, args.data_dir, **options)
        source = data_builders.data_source(builder, args.split)
    except (ValueError, FileNotFoundError) as e:
        parser.error(str(e))
    order = np.random.default_rng(args.shuffle_seed).permutation(len(source))[:args.count]
    draw([input_pipeline.decode_example(source[int(i)]) for i in order], args.out)
    print(f"wrote {args.out} ({len(order)} examples of {args.dataset}/{args.split})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
