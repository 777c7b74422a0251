"""Measurement scripts for the goals in the issues: each prints its figures and saves them as JSON."""

from __future__ import annotations

import argparse
from pathlib import Path


def bench_parser(doc: str | None, workdir: str | None = None) -> argparse.ArgumentParser:
    """The options every measurement script takes: --model, --json and, if it makes files, --workdir."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="dmf", help="bundled model or checkpoint (default: dmf)")
    parser.add_argument("--json", type=Path, required=True, help="where to save the figures")
    if workdir is not None:
        parser.add_argument("--workdir", type=Path, default=Path(workdir),
                            help="folder for the videos it makes once and reuses (default: %(default)s)")
    return parser
