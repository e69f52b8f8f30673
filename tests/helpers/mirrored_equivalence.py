"""Train one spec twice from the same weights on the same photos, on one device and under
MirroredStrategy over N logical CPUs, through archbuilder's own pipeline; print both as JSON.

    python tests/helpers/mirrored_equivalence.py SPEC PHOTOS REPLICAS EPOCHS [--set P=V ...]

Run in a fresh process: logical devices must be configured before TensorFlow starts.
"""

from __future__ import annotations

import json
import sys

from archbuilder.runtime import import_tensorflow_quietly

tf = import_tensorflow_quietly()


def main(spec_path: str, photos: str, replicas: int, epochs: int, overrides: list[str]) -> None:
    from archbuilder.training.distribute import start

    distribution = start("mirrored", replicas)  # the same set-up as `train --devices N`
    import numpy as np

    from archbuilder.data import pipeline
    from archbuilder.data.sources import training_data
    from archbuilder.keras.graph import build_model
    from archbuilder.spec.validate import load_checked_spec
    from archbuilder.training.callbacks.batch_norm_sync import BatchNormSync
    from archbuilder.training.optimizers import compile_model

    spec = load_checked_spec(spec_path, overrides=overrides).spec
    training = spec.training
    train = training_data(photos, None, tuple(spec.input.shape), seed=training.seed).train
    classes = len(train.class_names)
    steps = pipeline.steps_per_epoch(len(train.y), training.batch_size)
    arguments = (train.x, train.y, classes, training.batch_size, training.seed, 0, epochs, training.augmentation)

    single = build_model(spec)
    compile_model(single, training, steps)
    start_weights = single.get_weights()
    with distribution.scope():
        mirrored = build_model(spec)
        compile_model(mirrored, training, steps)
    mirrored.set_weights(start_weights)

    single.fit(pipeline.training_dataset(*arguments), epochs=epochs, steps_per_epoch=steps, verbose=0)
    dataset = distribution.strategy.distribute_datasets_from_function(
        lambda context: pipeline.replica_training_dataset(context, *arguments))
    mirrored.fit(dataset, epochs=epochs, steps_per_epoch=steps, verbose=0,
                 callbacks=[BatchNormSync(distribution.strategy, mirrored)])
    pairs = list(zip(single.get_weights(), mirrored.get_weights(), start_weights))
    print(json.dumps({
        "replicas": distribution.replicas,
        "steps": steps * epochs,
        "max_difference": max(float(np.max(np.abs(a - b))) for a, b, _ in pairs),
        "max_change": max(float(np.max(np.abs(a - w))) for a, _, w in pairs),
    }))


if __name__ == "__main__":
    rest = sys.argv[5:]
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), [v for k, v in zip(rest[::2], rest[1::2]) if k == "--set"])
