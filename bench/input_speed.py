"""Input pipeline speed, side by side in one run: streamed images against the peers' loaders.

    .venv/bin/python bench/input_speed.py [--images 640] [--repeats 3] [--train [--train-repeats 1]]

Pipeline alone (no model): a folder of generated full-size JPEGs (IMAGES files, 1024x768, 10
classes) -> decode, resize to 224x224, the recipe's augmentation (architectures/recipes/
resnet50_signs_fast.yaml: rotation 0.06, zoom 0.1, translation 0.08, contrast 0.2) -> batches of
32, one epoch, images/s:

  stream        archbuilder's streamed path (`--cache none`): data.stream.ImageFiles through
                data.pipeline.training_dataset, as `train` feeds fit
  disk-cache    the same read from the decoded-image cache (`--cache disk`), built beforehand
  records       the same JPEGs packed as TFRecord shards (`data pack --format tfrecord`, 1024 a
                shard, packed beforehand) and streamed from them (data.records)
  keras         keras.utils.image_dataset_from_directory (224x224, shuffle) with the same Keras
                augmentation layers, x/255 and prefetch(AUTOTUNE)
  torch-wN      torch.utils.data.DataLoader with N worker processes: Pillow decode, EXIF turn,
                bilinear resize to 224x224, a random rotation, zoom crop and contrast with Pillow
                (torchvision is not installed here), x/255 as a float tensor; the best N is reported

With --train: the documented ResNet-50 at 64x64 on 10 x 80 sign photos, one epoch through
`cli.py train`, `--cache none` (decoded every epoch) against `--cache memory`: images/s of the
epoch (state.json), each in its own process.

Each configuration runs REPEATS times (training: TRAIN_REPEATS), interleaved with the others, in
its own process; the median is reported, timed after each epoch's first batch. Prints one JSON
line per configuration and a ratio against the best peer. Use 640 images or more: the pipelines
decode a few batches ahead while the first is awaited, so a short epoch overstates the deeper
pipeline (archbuilder's streams decode 4 batches at once; with 96 images, streamed read 2.5x the
peer on a loaded machine, far above the ~1.2x its CPU time per image says).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIGNS = ROOT / ".." / "shared" / "datasets" / "sign-language-digits" / "images"
BATCH, SIZE = 32, 224
AUGMENTATION = {"rotation": 0.06, "zoom": 0.1, "translation": 0.08, "contrast": 0.2}


def generate(folder: Path, count: int) -> None:
    """`count` 1024x768 JPEGs (a photo's size), smooth with noise so that they decode like photos."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    ramp_y, ramp_x = np.linspace(0, 1, 768, dtype=np.float32), np.linspace(0, 1, 1024, dtype=np.float32)
    for index in range(count):
        target = folder / str(index % 10) / f"{index:06d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        colour = rng.uniform(0, 255, 3).astype(np.float32)
        pixels = colour * ramp_y[:, None, None] * ramp_x[None, :, None] + rng.uniform(0, 30, (768, 1024, 3))
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(target, quality=90)


def _worker(config: str, folder: Path) -> float:
    """Images/s of one epoch of `config` over `folder` (run in its own process)."""
    sys.path.insert(0, str(ROOT))
    from archbuilder.runtime import configure_tensorflow_environment

    configure_tensorflow_environment()
    if config.startswith("torch"):
        return _torch_epoch(folder, int(config.removeprefix("torch-w")))
    import tensorflow as tf

    from archbuilder.data.pipeline import augmentation_layers, normalize, training_dataset
    from archbuilder.spec.training import AugmentationSpec

    augmentation = AugmentationSpec(**AUGMENTATION)
    if config == "keras":
        import keras

        layers = augmentation_layers(augmentation, 0)
        dataset = (keras.utils.image_dataset_from_directory(folder, image_size=(SIZE, SIZE), batch_size=BATCH,
                                                            shuffle=True, seed=0, verbose=False)
                   .map(lambda x, y: (normalize(layers(x, training=True)), y), num_parallel_calls=tf.data.AUTOTUNE)
                   .prefetch(tf.data.AUTOTUNE))
    elif config == "records":
        from archbuilder.data.records import read_records

        packed = read_records(str(_records_folder(folder)), (SIZE, SIZE, 3))
        dataset = training_dataset(packed.x, packed.y, 10, BATCH, 0, 0, 1, augmentation)
    else:
        from archbuilder.data.disk_cache import cached
        from archbuilder.data.folder import scan_image_folder
        from archbuilder.data.stream import ImageFiles, read_headers

        files = scan_image_folder(folder)
        images = ImageFiles(files.paths, read_headers(files.paths)[0], (SIZE, SIZE, 3))
        if config == "disk-cache":
            images = cached(images)  # built by the untimed warm-up run
        dataset = training_dataset(images, files.labels, 10, BATCH, 0, 0, 1, augmentation)
    return _rate(dataset)


def _records_folder(folder: Path) -> Path:
    return folder.with_name(folder.name + "-records")


def _pack(folder: Path) -> None:
    """`folder` packed as record shards beside it, as `data pack FOLDER OUT --format tfrecord` does."""
    subprocess.run([sys.executable, "cli.py", "data", "pack", str(folder), str(_records_folder(folder)), "--format",
                    "tfrecord", "--shard-size", "1024"], cwd=ROOT, check=True, capture_output=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def _rate(batches) -> float:
    """Images/s over an epoch's batches after the first (which traces functions, starts workers)."""
    iterator = iter(batches)
    next(iterator)
    start, count = time.perf_counter(), 0
    for x, _ in iterator:
        count += int(x.shape[0])
    return count / (time.perf_counter() - start)


def _torch_epoch(folder: Path, workers: int) -> float:
    import numpy as np
    import torch
    from PIL import Image, ImageEnhance, ImageOps

    paths = sorted(folder.rglob("*.jpg"))
    labels = [int(p.parent.name) for p in paths]

    class Photos(torch.utils.data.Dataset):
        def __len__(self):
            return len(paths)

        def __getitem__(self, index):
            rng = np.random.default_rng(index)
            with Image.open(paths[index]) as image:
                image = ImageOps.exif_transpose(image).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR)
            image = image.rotate(float(rng.uniform(-1, 1) * AUGMENTATION["rotation"] * 360), Image.BILINEAR)
            zoom = 1 - rng.uniform(0, AUGMENTATION["zoom"])
            side = int(SIZE * zoom)
            shift = rng.uniform(-1, 1, 2) * AUGMENTATION["translation"] * SIZE
            left = int(np.clip((SIZE - side) / 2 + shift[0], 0, SIZE - side))
            top = int(np.clip((SIZE - side) / 2 + shift[1], 0, SIZE - side))
            image = image.crop((left, top, left + side, top + side)).resize((SIZE, SIZE), Image.BILINEAR)
            image = ImageEnhance.Contrast(image).enhance(1 + rng.uniform(-1, 1) * AUGMENTATION["contrast"])
            return torch.from_numpy(np.asarray(image, np.float32) / 255.0), labels[index]

    return _rate(torch.utils.data.DataLoader(Photos(), batch_size=BATCH, shuffle=True, num_workers=workers))


def _train_speed(cache: str, folder: Path, work: Path) -> float:
    run = work / f"run-{cache}-{time.monotonic_ns()}"
    subprocess.run([sys.executable, "cli.py", "train", "architectures/resnet50.yaml", "--data", str(folder), "--epochs",
                    "1", "--cache", cache, "--out", str(run), "--quiet"], cwd=ROOT, check=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True)
    return json.loads((run / "state.json").read_text())["history"][0]["images_per_second"]


def _measure(config: str, folder: Path) -> float:
    done = subprocess.run([sys.executable, __file__, "--worker", config, "--folder", str(folder)], check=True,
                          capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train", action="store_true")
    parser.add_argument("--train-repeats", type=int, default=1)
    parser.add_argument("--worker")
    parser.add_argument("--folder", type=Path)
    args = parser.parse_args()
    if args.worker:
        print(_worker(args.worker, args.folder))
        return
    with tempfile.TemporaryDirectory(prefix="input-speed-") as work:
        work = Path(work)
        os.environ.setdefault("ARCHBUILDER_CACHE_DIR", str(work / "cache"))
        folder = work / "images"
        generate(folder, args.images)
        configs = ["stream", "records", "disk-cache", "keras", "torch-w0", "torch-w1", "torch-w2"]
        _measure("disk-cache", folder)  # builds the cache, untimed
        _pack(folder)  # untimed, as the cache
        times: dict[str, list[float]] = {c: [] for c in configs}
        for _ in range(args.repeats):
            for config in configs:
                times[config].append(_measure(config, folder))
        medians = {c: statistics.median(v) for c, v in times.items()}
        best_peer = max(v for c, v in medians.items() if c == "keras" or c.startswith("torch"))
        for config in configs:
            print(json.dumps({"config": config, "images_per_second": round(medians[config], 1),
                              "runs": [round(v, 1) for v in times[config]],
                              "vs_best_peer": round(medians[config] / best_peer, 2)}))
        if args.train:
            signs = work / "signs"
            for name in sorted(p.name for p in SIGNS.iterdir()):
                (signs / name).mkdir(parents=True)
                for source in sorted((SIGNS / name).iterdir())[:80]:
                    (signs / name / source.name).symlink_to(source.resolve())
            speeds: dict[str, list[float]] = {"memory": [], "none": []}
            for _ in range(args.train_repeats):
                for cache in speeds:
                    speeds[cache].append(_train_speed(cache, signs, work))
            memory, none = (statistics.median(speeds[c]) for c in ("memory", "none"))
            print(json.dumps({"config": "resnet50-64px-train", "memory_images_per_second": round(memory, 1),
                              "streamed_images_per_second": round(none, 1), "streamed_vs_memory": round(none / memory, 2),
                              "runs": speeds}))


if __name__ == "__main__":
    main()
