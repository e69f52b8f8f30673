"""Datasets: where images come from and how they reach the model.

    folder.py    a folder with one subfolder per class -> file list, labels, class names
    hdf5.py      the SIGNS layout of the notebook (train_set_x, train_set_y, list_classes, ...)
    split.py     seeded validation split; photographer-disjoint split of the sign-language digits
    images.py    decode + resize into uint8 arrays, the one preprocessing used everywhere
    pipeline.py  tf.data: shuffle, batch, augment, x/255, prefetch
    sources.py   `--data` / `--test` arguments -> labelled uint8 arrays

Only images.py and pipeline.py import TensorFlow, and only inside functions.
"""
