"""python -m devcluster.images [--cache DIR]: build what is missing, one "ref archive" line per image on stdout."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from devcluster import images as package
from devcluster.images.recipes import ImageBuildError
from devcluster.images.targets import build_images, default_cache_dir


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devcluster.images", description=(package.__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--cache", type=Path, default=None, help=f"default: {default_cache_dir()}")
    args = parser.parse_args(argv)
    try:
        images = build_images(args.cache)
    except ImageBuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for image in images:
        print(image.ref, image.archive)
    return 0


if __name__ == "__main__":
    sys.exit(main())
