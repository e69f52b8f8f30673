"""Train specs twice from the same weights on the same photos, on one device and under
MirroredStrategy over N logical CPUs, through archbuilder's own pipeline; print one JSON line each.

    python tests/helpers/mirrored_equivalence.py PHOTOS REPLICAS EPOCHS CASES_JSON

CASES_JSON is a list of cases, each {"spec": PATH, "overrides": ["P=V", ...], "floatx": "float32",
"fused_adam": false, "seed": null} ("seeds": N instead of "seed": seeds 0 to N-1). One process runs them all (TensorFlow starts once, and logical devices
can only be configured before it runs anything, so run this in a fresh process).

`floatx: float64` builds both models in float64 (Keras's floatx, the softmax head included), so
that what rounding contributes shrinks by 2^29 and what is left is any real difference between
the two computations. `seed` fixes the initial weights (tests leave them to chance, so that
every run tries others; the output names the seed drawn). `fused_adam` switches both optimizers to the fused Adam op and the direct
updates, as `train` does (training/fused_adam.py, direct_updates.py).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from archbuilder.runtime import import_tensorflow_quietly

tf = import_tensorflow_quietly()


def compare(distribution, photos: str, epochs: int, spec: str, overrides=(), floatx: str = "float32",
            fused_adam: bool = False, seed: int | None = None) -> dict:
    import keras
    import numpy as np

    from archbuilder.data import pipeline
    from archbuilder.data.sources import training_data
    from archbuilder.keras.graph import build_model
    from archbuilder.plan.validate import load_checked_spec
    from archbuilder.training.callbacks.batch_norm_sync import BatchNormSync
    from archbuilder.training.direct_updates import use_direct_updates
    from archbuilder.training.fused_adam import use_fused_adam
    from archbuilder.training.optimizers import compile_model
    from archbuilder.training.synchronized_moments import use_exact_synchronized_moments

    # Keras fixes its global dtype policy from floatx the first time any layer is made, so a
    # second case in this process must set the policy too.
    keras.config.set_floatx(floatx)
    keras.config.set_dtype_policy(floatx)
    checked = load_checked_spec(spec, overrides=list(overrides)).spec
    training = checked.training
    train = training_data(photos, None, tuple(checked.input.shape), seed=training.seed).train
    classes = len(train.class_names)
    steps = pipeline.steps_per_epoch(len(train.y), training.batch_size)
    arguments = (train.x, train.y, classes, training.batch_size, training.seed, 0, epochs, training.augmentation)

    def build():
        model = build_model(checked)
        use_exact_synchronized_moments(model)  # as `train` does, on every model it trains
        dtypes = {layer.name: layer.compute_dtype for layer in model.layers}
        assert set(dtypes.values()) == {floatx}, dtypes  # the softmax head included
        return model

    # The initial weights: drawn anew by each run unless a seed is given, and reported either way
    # (so that a run that fails can be repeated).
    seed = random.SystemRandom().randrange(2**31) if seed is None else seed
    keras.utils.set_random_seed(seed)
    single = build()
    compile_model(single, training, steps)
    start_weights = single.get_weights()
    with distribution.scope():
        mirrored = build()
        compile_model(mirrored, training, steps)
    mirrored.set_weights(start_weights)
    fused = [use_fused_adam(model.optimizer) for model in (single, mirrored)] if fused_adam else [False, False]
    if fused_adam:  # with train's direct updates, which under the strategy leave Keras's path in place
        assert all(use_direct_updates(model.optimizer) for model in (single, mirrored))

    single.fit(pipeline.training_dataset(*arguments), epochs=epochs, steps_per_epoch=steps, verbose=0)
    dataset = distribution.strategy.distribute_datasets_from_function(
        lambda context: pipeline.replica_training_dataset(context, *arguments))
    mirrored.fit(dataset, epochs=epochs, steps_per_epoch=steps, verbose=0,
                 callbacks=[BatchNormSync(distribution.strategy, mirrored)])
    keras.config.set_floatx("float32")
    keras.config.set_dtype_policy("float32")
    # Keras's weights: trainable first, then the non-trainable ones (BatchNorm's moving statistics).
    trainable = len(single.trainable_weights)
    pairs = list(zip(single.get_weights(), mirrored.get_weights(), start_weights))
    differences = [float(np.max(np.abs(a - b))) for a, b, _ in pairs]
    changes = [float(np.max(np.abs(a - w))) for a, _, w in pairs]
    # Every replica's copy of every variable, not only the first one get_weights reads.
    copies = [[np.asarray(v) for v in distribution.strategy.experimental_local_results(w.value)]
              for w in mirrored.weights]
    return {
        "seed": seed,
        "replicas": distribution.replicas,
        "steps": steps * epochs,
        "dtype": str(single.weights[0].dtype),
        "fused_adam": fused,
        "max_difference": max(differences),
        "max_difference_trainable": max(differences[:trainable]),
        "max_difference_statistics": max(differences[trainable:] or [0.0]),
        "worst_weight": single.weights[int(np.argmax(differences))].path,
        "max_change": max(changes),
        "max_change_statistics": max(changes[trainable:] or [0.0]),
        "replica_copies_differ": max(float(np.max(np.abs(c - cs[0]))) for cs in copies for c in cs),
    }


def main(photos: str, replicas: int, epochs: int, cases: list[dict]) -> None:
    from archbuilder.training.distribute import start

    distribution = start("mirrored", replicas)  # the same set-up as `train --devices N`
    for case in cases:
        # "seeds": N runs the case from seeds 0 .. N-1 (how bench/RESULTS.md's spreads were measured)
        for seed in range(case.pop("seeds")) if "seeds" in case else [case.pop("seed", None)]:
            figures = compare(distribution, photos, epochs, **case, seed=seed)
            print(json.dumps({"spec": Path(case["spec"]).name, **figures}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4]))
