#!/usr/bin/env python3
"""TensorBoard fixture for tests/unit/test_logs.c (committed; CI never runs Python).

Writes tests/ref/tensorboard/tf.tfevents with TensorBoard's own writer (tensorboard.summary.writer's
EventFileWriter: its RecordWriter frames the records and computes the masked CRC-32C): the file_version event
it writes itself, then the events of CASES below, each an Event proto with a fixed wall time, a step and a
Summary of simple_value scalars. The C test checks every record's framing and CRCs, and that sprec's encoder
gives the same bytes for each event of CASES (the first event's wall time is the writing time, so it is only
checked for its fields).

    pip install tensorboard && python3 tests/ref/make_tensorboard_fixture.py
"""
import glob, os, shutil, tempfile
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tensorboard", "tf.tfevents")
# (wall_time, step, [(tag, value)]): the shapes sprec writes (a train log line, a metrics line), and edge values
CASES = [
    (1700000000.25, 1, [("sft/loss", 2.7725887), ("sft/lr", 1e-3), ("sft/grad_norm", 0.5), ("sft/tokens_per_s", 12345.5)]),
    (1700000001.5, 2, [("dpo/rewards/margins", -0.125), ("dpo/rewards/accuracies", 1.0)]),
    (1700000002.0, 300, [("sprec/test/NDCG@10", 0.0625), ("sprec/test/HR@10", 0.0)]),
    (1700000003.75, 0, [("zero/step", 3.0)]),
    (1700000004.0, 2 ** 40, [("big/step", -1e30), ("tiny", 1e-40)]),
]


def main():
    d = tempfile.mkdtemp()
    w = EventFileWriter(d)
    for wall, step, vals in CASES:
        s = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=t, simple_value=v) for t, v in vals])
        w.add_event(event_pb2.Event(wall_time=wall, step=step, summary=s))
    w.close()
    (path,) = glob.glob(os.path.join(d, "events.out.tfevents.*"))
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    shutil.copyfile(path, OUT)
    shutil.rmtree(d)
    print("%s: %d bytes, %d events after file_version" % (OUT, os.path.getsize(OUT), len(CASES)))


if __name__ == "__main__":
    main()
