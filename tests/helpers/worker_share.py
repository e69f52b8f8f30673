"""One worker of a real multi-worker cluster (TF_CONFIG) reading its share of streamed training
images through archbuilder's pipeline, as `train` builds it; print one JSON line of what it read.

    TF_CONFIG=... python tests/helpers/worker_share.py FOLDER EPOCHS BATCH RESUME_AT

FOLDER's images are one flat colour each, red = the image's number (see the test), so the pixels
of a batch name the files this worker decoded. The line: {"worker": its index, "replicas": in
sync, "epochs": [[numbers read in epoch e] ...], "resumed": [[...] for epochs RESUME_AT..]}; the
second from a dataset that starts at epoch RESUME_AT, as a resumed run's does.
"""

from __future__ import annotations

import json
import sys

from archbuilder.runtime import import_tensorflow_quietly

tf = import_tensorflow_quietly()


def read_numbers(strategy, images, labels, classes: int, batch: int, first_epoch: int, epochs: int) -> list[list[int]]:
    """The image numbers this worker's replicas read, per epoch, through strategy's distributed dataset."""
    from archbuilder.data import pipeline

    dataset = strategy.distribute_datasets_from_function(lambda context: pipeline.replica_training_dataset(
        context, images, labels, classes, batch, 0, first_epoch, epochs))
    steps = pipeline.steps_per_epoch(len(labels), batch)
    read: list[list[int]] = [[] for _ in range(first_epoch, epochs)]
    for step, (x, _) in enumerate(dataset):
        for local in strategy.experimental_local_results(x):
            read[step // steps].extend(int(v) for v in tf.round(local[:, 0, 0, 0] * 255).numpy())
    return read


def main(folder: str, epochs: int, batch: int, resume_at: int) -> None:
    from archbuilder.data.folder import scan_image_folder
    from archbuilder.data.stream import ImageFiles, read_headers
    from archbuilder.training.distribute import start

    distribution = start("multi-worker", worker_timeout=60)
    strategy = distribution.strategy
    files = scan_image_folder(folder)
    orientations, problems = read_headers(files.paths)
    assert not problems, problems
    images = ImageFiles(files.paths, orientations, (8, 8, 3))  # streamed: each batch decoded from its files
    classes = len(files.class_names)
    whole = read_numbers(strategy, images, files.labels, classes, batch, 0, epochs)
    distribution.watchdog.beat()
    resumed = read_numbers(strategy, images, files.labels, classes, batch, resume_at, epochs)
    distribution.watchdog.stop()
    print(json.dumps({"worker": distribution.cluster.task_index, "replicas": strategy.num_replicas_in_sync,
                      "epochs": whole, "resumed": resumed}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
