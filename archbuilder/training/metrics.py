"""Classification metrics from predicted probabilities, in numpy (no TensorFlow)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Keras clips probabilities to [eps, 1 - eps] before the log in categorical cross-entropy.
_EPSILON = 1e-7


@dataclass(frozen=True)
class Evaluation:
    class_names: tuple[str, ...]
    loss: float
    accuracy: float
    confusion: np.ndarray  # [true, predicted] counts
    count: int

    def precision(self) -> np.ndarray:
        predicted = self.confusion.sum(axis=0)
        return np.divide(np.diag(self.confusion), predicted, out=np.full(len(predicted), np.nan), where=predicted > 0)

    def recall(self) -> np.ndarray:
        actual = self.confusion.sum(axis=1)
        return np.divide(np.diag(self.confusion), actual, out=np.full(len(actual), np.nan), where=actual > 0)

    def to_json(self) -> dict:
        precision, recall, support = self.precision(), self.recall(), self.confusion.sum(axis=1)
        return {
            "images": self.count,
            "loss": self.loss,
            "accuracy": self.accuracy,
            "per_class": [
                {
                    "class": name,
                    "precision": None if np.isnan(p) else float(p),
                    "recall": None if np.isnan(r) else float(r),
                    "support": int(s),
                }
                for name, p, r, s in zip(self.class_names, precision, recall, support)
            ],
            "confusion_matrix": self.confusion.tolist(),
        }

    @classmethod
    def from_json(cls, data: dict) -> "Evaluation":
        """Back from `to_json` (precision and recall follow from the confusion matrix)."""
        return cls(tuple(row["class"] for row in data["per_class"]), data["loss"], data["accuracy"],
                   np.asarray(data["confusion_matrix"], dtype=np.int64).reshape(len(data["per_class"]), -1),
                   data["images"])

    def to_text(self) -> str:
        width = max(5, *(len(n) for n in self.class_names))
        lines = [
            f"images:   {self.count}",
            f"loss:     {self.loss:.4f}",
            f"accuracy: {self.accuracy:.4f}",
            "",
            f"{'class':>{width}}  precision  recall  support",
        ]
        for name, p, r, s in zip(self.class_names, self.precision(), self.recall(), self.confusion.sum(axis=1)):
            fmt = lambda v: "      -" if np.isnan(v) else f"{v:7.4f}"
            lines.append(f"{name:>{width}}    {fmt(p)} {fmt(r)}  {int(s):7d}")
        lines += ["", "confusion matrix (rows: true class, columns: predicted):"]
        cell = max(width, len(str(int(self.confusion.max()))) if self.confusion.size else 1)
        lines.append(" " * (width + 1) + " ".join(f"{n:>{cell}}" for n in self.class_names))
        for name, row in zip(self.class_names, self.confusion):
            lines.append(f"{name:>{width}} " + " ".join(f"{int(v):>{cell}}" for v in row))
        return "\n".join(lines)


def evaluate_probabilities(probabilities: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...]) -> Evaluation:
    classes = len(class_names)
    picked = np.clip(probabilities[np.arange(len(labels)), labels], _EPSILON, 1 - _EPSILON)
    predicted = probabilities.argmax(axis=1)
    confusion = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    return Evaluation(
        class_names=tuple(class_names),
        loss=float(-np.mean(np.log(picked))) if len(labels) else float("nan"),
        accuracy=float(np.mean(predicted == labels)) if len(labels) else float("nan"),
        confusion=confusion,
        count=int(len(labels)),
    )


def predict_probabilities(model, x_uint8: np.ndarray, batch_size: int = 64, call=None) -> np.ndarray:
    """Class probabilities for uint8 images (an array, or data.stream.ImageFiles), through the same x/255 as training; a head that
    outputs logits (linear) gets its softmax here, so the result is probabilities either way.

    `call` (a batch -> outputs) replaces `model.predict_on_batch`, which under tf.distribute
    runs the batch on every replica and gathers the copies across workers.
    """
    from archbuilder.data.pipeline import inference_dataset
    from archbuilder.training.head_output import output_kind

    logits = output_kind(model) == "logits"
    call = call or model.predict_on_batch
    try:
        outputs = [np.asarray(call(batch)) for batch in inference_dataset(x_uint8, batch_size)]
    except Exception:  # noqa: BLE001 - a streamed file that failed is named; anything else re-raised
        from archbuilder.data.stream import check_stream_error, streamed_sources

        check_stream_error(streamed_sources(x_uint8))
        raise
    if not outputs:
        return np.zeros((0, model.output_shape[-1]), np.float32)
    result = np.concatenate(outputs)
    return _softmax(result.astype(np.float32)) if logits else result  # float16 logits under mixed precision


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))  # no overflow for large logits
    return shifted / shifted.sum(axis=-1, keepdims=True)
