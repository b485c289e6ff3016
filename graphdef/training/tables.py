"""Predictions as a table (what `graphdef predict` writes): one column per output element.

    columns = prediction_columns(graphdef.predict(model, "xor"))   # {'probs[0]': ..., 'probs[1]': ..., 'class': ...}
    text = to_csv(columns)
"""
from __future__ import annotations

import csv
import io

import numpy as np


def prediction_columns(predictions: dict) -> dict[str, np.ndarray]:
    """Columns of one value per sample, from predict()'s {name: array with a row per sample}:
    `name` for a value per sample, else `name[i]` for each element i of the (flattened) rest; and,
    when the only prediction is 2-D (scores per class), a `class` column with each row's argmax."""
    columns = {}
    for name, values in predictions.items():
        flat = values.reshape(len(values), -1)
        if values.ndim == 1:
            columns[name] = flat[:, 0]
        else:
            columns |= {f"{name}[{i}]": flat[:, i] for i in range(flat.shape[1])}
    if len(predictions) == 1 and next(iter(predictions.values())).ndim == 2:
        columns["class"] = np.argmax(next(iter(predictions.values())), axis=-1)
    return columns


def to_csv(columns: dict) -> str:
    """The columns as CSV text: a header of their names, then a line per row."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(zip(*(np.asarray(c).tolist() for c in columns.values())))
    return text.getvalue()
