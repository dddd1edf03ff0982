"""Stored TFRecord bytes per token of the embedded dataset, for this checkout and (``--old``)
another, under the same preprocessing flags.

``python bench/stored_bytes.py [--old CHECKOUT] -- PREPROCESS FLAGS...`` runs
``lstm-composer preprocess`` on the embedded dataset (rendered into ``LSTM_COMPOSER_CACHE`` on first
use) in a child process per checkout, each with its own ``PYTHONPATH``, and counts the train and
validation shards' bytes over the manifest's token count: what Dataflow writes, and what one epoch
streams, per token of music. It prints one JSON line per checkout, then one JSON object of the
figures (with ``--old``, the old/new ratio).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def stored(checkout: str, flags: list[str]) -> dict:
    """Preprocess with ``checkout``'s code; its output's bytes, tokens and record format."""
    out = tempfile.mkdtemp(prefix="stored-bytes-")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "lstm_composer", "preprocess", "--output", out, *flags],
            capture_output=True,
            text=True,
            cwd=checkout,
            env={**os.environ, "PYTHONPATH": checkout},
        )
        if proc.returncode:
            sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
            raise SystemExit(f"preprocess in {checkout} failed with status {proc.returncode}")
        with open(os.path.join(out, "manifest.json")) as f:
            manifest = json.load(f)
        shards = [
            path for split in ("train", "validation") for path in glob.glob(f"{out}/{split}-*")
        ]
        size = sum(os.path.getsize(path) for path in shards)
        tokens = manifest["counts"]["tokens"]
        return {
            "checkout": checkout,
            "format": manifest.get("format_version"),
            "tokens": tokens,
            "stored_bytes": size,
            "bytes_per_token": round(size / tokens, 2),
        }
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--old", help="another checkout (a git worktree) to measure the same way")
    args = p.parse_args(argv[:split])
    flags = argv[split + 1 :]
    new = stored(ROOT, flags)
    print(json.dumps({"side": "new", **new}), flush=True)
    figures = {"flags": " ".join(flags), "new_bytes_per_token": new["bytes_per_token"]}
    if args.old:
        old = stored(os.path.abspath(args.old), flags)
        print(json.dumps({"side": "old", **old}), flush=True)
        figures["old_bytes_per_token"] = old["bytes_per_token"]
        figures["old_over_new"] = round(old["stored_bytes"] / new["stored_bytes"], 1)
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
