"""Prints the training input pipeline's throughput (examples/s) on a built dataset.

    python -m benchmarks.input_pipeline [--dataset synthetic] [--data_dir DIR] [--batch 16]
        [--threads 4] [--steps 100] [--option=value ...]

Reads, decodes (PNG), augments and batches as training does (`input_pipeline.make_dataset`,
training=True), with nothing else running; the first batches (thread start-up) are not timed.
"""

import argparse
import os
import platform
import sys
import time

import numpy as np

import data_builders
from maskpose_jax import input_pipeline


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.input_pipeline")
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=5)
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    options = data_builders.parse_cli_options(args.dataset, rest)
    builder = data_builders.make_builder(args.dataset, args.data_dir, **options)
    source = data_builders.data_source(builder, "train")
    dataset = input_pipeline.make_dataset(source, global_batch_size=args.batch, training=True,
                                          num_threads=args.threads)
    iterator = iter(dataset)
    for _ in range(args.warmup):
        next(iterator)
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        batch = next(iterator)
        times.append(time.perf_counter() - start)
    total = float(np.sum(times))
    shapes = {k: v.shape for k, v in batch.items()}
    print(f"dataset {args.dataset}/{builder.builder_config.name} train ({len(source)} examples), "
          f"batch {args.batch}, {args.threads} threads, {os.cpu_count()} CPUs "
          f"({platform.processor() or platform.machine()})")
    print(f"batch shapes: {shapes}")
    print(f"{args.steps * args.batch / total:.0f} examples/s "
          f"({1e3 * total / args.steps:.1f} ms per batch, median {1e3 * np.median(times):.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
