"""Evaluates the latest checkpoint of a run on the config's eval split (DESIGN §11).

    python -m experiments.evaluate --config=synthetic.py [--workdir=runs/synthetic]

Writes `<workdir>/results.json` and `<workdir>/results.md` and prints the table: the prediction
as it is; beside it, labelled, one global left/right relabelling for the whole set (one bit of
ground truth) and the original authors' per-joint oracle swap (reads ground truth).
"""

import sys

from absl import app

from experiments import flags as experiment_flags


def main(argv):
    del argv
    import jax  # pylint: disable=import-outside-toplevel

    from data_builders import configured  # pylint: disable=import-outside-toplevel
    from maskpose_jax import checkpoint  # pylint: disable=import-outside-toplevel
    from maskpose_jax import datasets  # pylint: disable=import-outside-toplevel
    from maskpose_jax import factory  # pylint: disable=import-outside-toplevel
    from maskpose_jax import inference  # pylint: disable=import-outside-toplevel
    from maskpose_jax import reporting  # pylint: disable=import-outside-toplevel
    from maskpose_jax import sharding  # pylint: disable=import-outside-toplevel

    config = experiment_flags.config()
    workdir = experiment_flags.workdir(f"runs/{config.data.name}")
    source = configured.open_split(config, config.data.eval_split)
    image_size = datasets.image_size_of(source)
    try:
        state, _ = factory.restore_latest(config, workdir, sharding.make_mesh(),
                                          configured.open_split(config, config.data.train_split))
    except (FileNotFoundError, checkpoint.UnreadableCheckpointError) as error:
        sys.exit(f"error: {error}")
    detector, _ = factory.create_models(config)
    local = inference.local_copy(state)
    results = inference.evaluate(config, inference.make_predict(detector), local.params,
                                 local.batch_stats, source, image_size, config.eval.max_examples)
    results["step"] = int(jax.device_get(state.step))
    supervised = " (SUPERVISED reference: trained on ground-truth 2.5D)" if (
        config.loss.supervision == "oracle") else ""
    title = (f"{config.data.name}/{config.data.eval_split}, variant {config.variant}{supervised}, "
             f"step {results['step']}")
    _, md_path = reporting.write_results(results, workdir, title)
    with open(md_path) as f:
        print(f.read())


if __name__ == "__main__":
    app.run(main, flags_parser=experiment_flags.parse_flags)
