#!/usr/bin/env python3
"""Compare a `sprec dump` output with a reference fixture (a debugging tool; the C suite does the same check).

    python3 tests/ref/compare.py EXPECTED.h5 OUT.h5 [--batch BATCH.h5] [--tol 1e-4]

For logits, logprobs, seq_logprob, loss and every grad/NAME of EXPECTED it prints the relative error
||out - expected|| / ||expected|| and the largest absolute error, and exits 1 if any relative error exceeds
--tol (or a tensor is missing or has the wrong shape). Positions at or past a sequence's length are padding,
which the dump contract leaves free: with a batch file (by default the batch.h5 beside EXPECTED, when present)
logits and logprobs are compared at valid positions only.
"""
import argparse
import os
import sys

import h5py
import numpy as np

OUTPUTS = ("logits", "logprobs", "seq_logprob", "loss")


def tensor_names(f):
    names = [k for k in OUTPUTS if k in f]
    if "grad" in f:
        names += [f"grad/{k}" for k in f["grad"]]
    return names


def valid_positions(batch_path, shape):
    """Boolean [B,T] of non-padding positions, or None without lengths."""
    with h5py.File(batch_path, "r") as b:
        if "lengths" not in b:
            return None
        lengths = b["lengths"][()]
    if lengths.shape != (shape[0],):
        sys.exit(f"{batch_path}: lengths has shape {lengths.shape}, expected ({shape[0]},)")
    return np.arange(shape[1])[None, :] < lengths[:, None]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("expected")
    ap.add_argument("out")
    ap.add_argument("--batch", help="batch file for the padding mask (default: batch.h5 beside EXPECTED)")
    ap.add_argument("--tol", type=float, default=1e-4, help="largest relative error allowed (default 1e-4)")
    args = ap.parse_args()
    batch = args.batch or os.path.join(os.path.dirname(os.path.abspath(args.expected)), "batch.h5")
    if args.batch is None and not os.path.exists(batch):
        batch = None

    failures = 0
    with h5py.File(args.expected, "r") as e, h5py.File(args.out, "r") as o:
        valid = valid_positions(batch, e["logprobs"].shape) if batch and "logprobs" in e else None
        print(f"{'tensor':<52} {'rel err':>10} {'max abs':>10}")
        names = tensor_names(e)
        for name in names:
            ref = e[name][()].astype(np.float64)
            if name not in o:
                print(f"{name:<52} {'MISSING':>10}")
                failures += 1
                continue
            got = o[name][()].astype(np.float64)
            if got.shape != ref.shape:
                print(f"{name:<52} shape {got.shape} != expected {ref.shape}")
                failures += 1
                continue
            if valid is not None and name in ("logits", "logprobs"):
                ref, got = ref[valid], got[valid]
            diff = got - ref
            norm = np.linalg.norm(ref)
            rel = np.linalg.norm(diff) / norm if norm > 0 else np.linalg.norm(diff)
            max_abs = np.max(np.abs(diff)) if diff.size else 0.0
            bad = not np.isfinite(rel) or rel > args.tol
            failures += bad
            print(f"{name:<52} {rel:10.3e} {max_abs:10.3e}{'  FAIL' if bad else ''}")
        extra = sorted(set(tensor_names(o)) - set(names))
        if extra:
            print(f"not in expected (ignored): {', '.join(extra)}")
    print(f"{failures} of {len(names)} tensors over tolerance {args.tol:g}"
          if failures else f"all within relative error {args.tol:g}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
