"""Every tf.data pipeline we iterate runs without tf.data's autotuning thread.

With autotuning on (tf.data's default) an iterator runs a thread (Model::OptimizeLoop) that sleeps
between its optimizations for 10 ms, 20 ms, 40 ms, ... doubling up to a minute; deleting the
iterator joins that thread, and the join waits the current sleep out (TensorFlow 2.21; gdb:
RootDataset::Iterator's destructor waiting on Model::OptimizeLoop). So an iterator deleted while
the thread sleeps ends at its next wake-up, 10 ms x (2^k - 1) after it started: a prediction of
10.2-20.5 s then takes 20.5 s, one of 20.5-41 s takes 41 s, one of 41-82 s takes 82 s, with both
cores idle meanwhile:
- `fit`'s training iterator: 27-33 s after a ConvNeXt-T run's last epoch;
- each prediction over a test set or the evaluation images (`predict_probabilities`): on the
  first-generation EPYC, ViT-B/16 predictions of 16 images (9-15 s) took 20.50-20.63 s in 10 of
  37 calls with the thread and in none of 16 without; `train`'s final prediction of 192 images
  took 83 s in some runs and 33-42 s in others, ResNeXt-50's here as ViT-B/16's on a Xeon
  (bench/RESULTS.md, 2026-12-03 to 12-05);
- each load of image files: up to 1.2 s after a 1.3-1.8 s load of the 1,762 sign photos, 0.002 s
  without (bench/iterator_join.py).

Nothing is lost: without autotuning, a parallel map's AUTOTUNE still runs one call per core at
once and prefetch(AUTOTUNE) still fills ahead of its consumer (tests/test_training_options.py).
Options carry over to every dataset derived from or zipped with one that has them, so setting
them on a pipeline's source covers what is built on it.
"""

from __future__ import annotations


def without_autotuning(dataset, *, one_thread_per_op: bool = False):
    """`dataset` without the autotuning thread; with `one_thread_per_op`, each op inside the pipeline
    also runs on one thread (training pipelines: data/pipeline.py says why)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    if one_thread_per_op:
        options.threading.max_intra_op_parallelism = 1
    return dataset.with_options(options)
