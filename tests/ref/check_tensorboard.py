#!/usr/bin/env python3
"""Checks a run folder's TensorBoard events (run.tensorboard = true) with TensorBoard's own reader.

    pip install tensorboard && python3 tests/ref/check_tensorboard.py RUN_DIR [RUN_DIR ...]

Loads RUN_DIR/tensorboard with tensorboard.backend.event_processing's EventAccumulator and checks that every
number of every train_log.jsonl line is the scalar LOOP/KEY at the line's step (LOOP: [train] method of
config.ini, or sprec.sft / sprec.dpo for SPRec's stages), equal to the logged value rounded to float32; that
LOOP/steps_per_s exists for every loop (and sft/tokens_per_s for SFT runs), positive; and, for SPRec, that every
number of metrics.jsonl / metrics-valid.jsonl is sprec/test/KEY / sprec/valid/KEY at step = iteration.
Exits 1 with the first few differences.
"""
import configparser, json, os, struct, sys
from tensorboard.backend.event_processing import event_accumulator


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def check(run):
    acc = event_accumulator.EventAccumulator(os.path.join(run, "tensorboard"), size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    got = {t: {e.step: e.value for e in acc.Scalars(t)} for t in tags}
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(run, "config.ini"))
    method = cfg.get("train", "method", fallback="sft")
    bad, n, loops = [], 0, set()

    def expect(tag, step, value):
        nonlocal n
        n += 1
        have = got.get(tag, {}).get(step)
        if have is None or have != f32(value):
            bad.append("%s step %d: TensorBoard %r, log %r" % (tag, step, have, value))

    for line in open(os.path.join(run, "train_log.jsonl")):
        row = json.loads(line)
        loop = "sprec." + row["stage"] if "iteration" in row else method
        loops.add(loop)
        for k, v in row.items():
            if k not in ("step", "iteration") and isinstance(v, (int, float)) and not isinstance(v, bool):
                expect(loop + "/" + k, row["step"], v)
    for loop in loops:
        rates = got.get(loop + "/steps_per_s", {})
        if not rates or min(rates.values()) <= 0:
            bad.append(loop + "/steps_per_s missing or not positive")
    if method == "sft" and not min(got.get("sft/tokens_per_s", {0: 0}).values()) > 0:
        bad.append("sft/tokens_per_s missing or not positive")
    if method == "sprec":
        for name, split in (("metrics.jsonl", "test"), ("metrics-valid.jsonl", "valid")):
            path = os.path.join(run, name)
            if not os.path.exists(path):
                continue
            for line in open(path):
                row = json.loads(line)
                for k, v in row.items():
                    if k not in ("iteration",) and isinstance(v, (int, float)) and not isinstance(v, bool):
                        expect("sprec/%s/%s" % (split, k), row["iteration"], v)
    print("%s: %d logged numbers checked against %d TensorBoard tags, %d differences" % (run, n, len(tags), len(bad)))
    for b in bad[:10]:
        print("  " + b)
    return not bad


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sys.exit(0 if all([check(r) for r in sys.argv[1:]]) else 1)
