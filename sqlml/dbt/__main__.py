"""``python -m sqlml.dbt path``: where the dbt package with the sqlml_model materialization
is, for a project's packages.yml."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sqlml.dbt import package_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sqlml.dbt", description="sqlml's dbt package")
    parser.add_argument(
        "command", choices=["path"], help="path: print the directory of the dbt package"
    )
    parser.parse_args(argv)
    print(package_path())
    return 0


if __name__ == "__main__":
    sys.exit(main())
