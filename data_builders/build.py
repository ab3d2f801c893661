"""Builds one of our datasets, without TensorFlow.

    python -m data_builders.build synthetic [--data_dir DIR] [--option=value ...]

Options are the builder's config fields (`--help-options` lists them). The same options give
byte-identical files. tfds writes into a temporary folder and renames it when the build is
complete, so an interrupted build never leaves a dataset that looks finished.
"""

import argparse
import sys

import data_builders


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m data_builders.build", description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help=f"one of: {', '.join(sorted(data_builders.BUILDERS))}")
    parser.add_argument("--data_dir", default=None, help="tfds data directory")
    parser.add_argument("--help-options", action="store_true", help="list the builder options")
    args, rest = parser.parse_known_args(argv)
    try:
        options = data_builders.parse_cli_options(args.dataset, rest)
    except ValueError as e:
        parser.error(str(e))
    return parser, args, options


def main(argv=None):
    parser, args, options = parse_args(sys.argv[1:] if argv is None else argv)
    if args.help_options:
        for key, kind in data_builders.option_types(args.dataset).items():
            print(f"--{key}={kind.__name__}")
        return 0
    try:
        builder = data_builders.make_builder(args.dataset, args.data_dir, **options)
    except (ValueError, FileNotFoundError) as e:
        parser.error(str(e))
    print(f"building {args.dataset}/{builder.builder_config.name} into {builder.data_dir}",
          flush=True)
    try:
        builder.download_and_prepare()
    except (ValueError, FileNotFoundError) as e:  # frames.BadInput is a ValueError
        # The builders' input errors name the file; tfds left only its temporary folder.
        print(f"python -m data_builders.build: error: {e}", file=sys.stderr)
        return 1
    for split, info in builder.info.splits.items():
        print(f"  {split}: {info.num_examples} examples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
