"""Datasets: where images come from and how they reach the model.

    folder.py        a folder with one subfolder per class -> file list, labels, class names
                     (ImageNet's synset folders, class-name map and flat validation folder too)
    hdf5.py          the SIGNS layout of the notebook (train_set_x, train_set_y, list_classes, ...)
    records.py       sharded TFRecord files of encoded images (`data pack --format tfrecord`)
    split.py         seeded validation split; photographer-disjoint split of the sign-language digits
    images.py        decode + resize into uint8 arrays, the one preprocessing used everywhere
                     (a large JPEG decoded at 1/2, 1/4 or 1/8 by libjpeg's DCT scaling first)
    stream.py        the same decode inside tf.data, batch by batch: images that are never all in memory
    disk_cache.py    decoded images written once as lossless PNGs (`--cache disk`)
    cache_choice.py  `--cache`: held, streamed or disk-cached, and what each holds in memory
    pipeline.py      tf.data: shuffle, batch, augment, x/255, prefetch
    augment.py       augmentation drawn per image from (seed, epoch, index): reproducible, resumable
    axis_resample.py its zoom and translation in two 1-D passes: the Keras kernel's pixels, faster
    sources.py       `--data` / `--test` arguments -> labelled uint8 images (arrays or streamed)

TensorFlow is imported only inside functions.
"""
