"""`upload`: a data set the team uploaded (`POST /v1/datasets`), read back by the trainer.

Formats: .npz with arrays `x` and `y` (read with allow_pickle=False, so a pickled object array
is refused, never loaded); .csv with a header row and .parquet (a table), in both of which the
`y` or `label` column (else the last) is the target and the others are features. Parquet's
column types are checked from its schema before any data is read: numbers only, so no
extension type (whose Python form would be a pickle) is ever deserialised.
`x`: float or integer features, shape (N, ...) with 1 to 3 feature dimensions; `y`: integer
labels 0..C-1 (classification, shape (N,)) or float targets (regression, (N,) or (N, k)); no NaN
or infinity. The same checks run when the file is uploaded and when a job reads it.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from pydantic import Field

from trainlib.components.datasets_common import ClassificationSettings, noisy_labels, split_indices
from trainlib.data import DataBundle, DataInfo, Task
from trainlib.errors import DataError
from trainlib.registries import DATASETS

FORMATS = ("npz", "csv", "parquet")
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
MAX_CLASSES = 100_000
TARGET_COLUMNS = ("y", "label")

DatasetResolver = Callable[[str], tuple[Path, str]]  # data set id -> (stored file, format)


class UploadError(ValueError):
    """A file that is not a usable data set; the message says what to fix."""


@dataclass(frozen=True)
class Arrays:
    x: np.ndarray[Any, Any]
    y: np.ndarray[Any, Any]

    @property
    def task(self) -> str:
        return "classification" if self.y.dtype.kind in "iu" else "regression"

    def describe(self) -> dict[str, Any]:
        """What the service records (and GET /v1/datasets shows) about the data set."""
        outputs = int(self.y.max()) + 1 if self.task == "classification" else self.y.shape[1]
        return {
            "samples": int(self.x.shape[0]),
            "input_shape": list(self.x.shape[1:]),
            "task": self.task,
            "num_classes" if self.task == "classification" else "targets": outputs,
            "x_dtype": str(self.x.dtype),
            "y_dtype": str(self.y.dtype),
        }


def check_format(fmt: str) -> str:
    fmt = fmt.lower().lstrip(".")
    if fmt not in FORMATS:
        raise UploadError(
            f"unsupported format {fmt!r}; upload .npz (arrays x, y), .csv or .parquet"
        )
    return fmt


def read_upload(path: Path, fmt: str, max_unpacked_bytes: int = 2**30) -> Arrays:
    """Read and validate a stored or incoming file; raises UploadError with the reason."""
    fmt = check_format(fmt)
    if fmt == "npz":
        x, y = _read_npz(path, max_unpacked_bytes)
    elif fmt == "parquet":
        x, y = _read_parquet(path, max_unpacked_bytes)
    else:
        x, y = _read_csv(path)
    return validate(x, y)


def _read_npz(path: Path, max_unpacked_bytes: int) -> tuple[np.ndarray[Any, Any], ...]:
    if not zipfile.is_zipfile(path):
        raise UploadError("not an .npz file (a zip archive of .npy arrays, from numpy.savez)")
    with zipfile.ZipFile(path) as archive:  # sizes from the directory: no zip bomb is unpacked
        unpacked = sum(info.file_size for info in archive.infolist())
    if unpacked > max_unpacked_bytes:
        raise UploadError(f"the arrays unpack to {unpacked} bytes, over {max_unpacked_bytes}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [name for name in ("x", "y") if name not in npz.files]
            if missing:
                raise UploadError(f"the .npz has {sorted(npz.files)}; it needs arrays x and y")
            return npz["x"], npz["y"]
    except UploadError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise UploadError(
                "the .npz holds a pickled object array (a ragged or mixed-type array?); "
                "pickles are never loaded: save plain numeric arrays of equal-length rows"
            ) from None
        raise UploadError(f"unreadable .npz: {exc}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise UploadError(f"unreadable .npz: {exc}") from None


def _read_csv(path: Path) -> tuple[np.ndarray[Any, Any], ...]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UploadError("the .csv is not UTF-8 text") from None
    rows = [row for row in csv.reader(io.StringIO(text)) if row]
    if len(rows) < 3:
        raise UploadError("the .csv needs a header row and at least two data rows")
    header = [name.strip() for name in rows[0]]
    target = next((i for i, name in enumerate(header) if name in TARGET_COLUMNS), len(header) - 1)
    if len(header) < 2:
        raise UploadError("the .csv needs at least one feature column and a y column")
    features: list[list[float]] = []
    labels: list[str] = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise UploadError(f"line {line} has {len(row)} fields, the header {len(header)}")
        values = []
        for column, cell in enumerate(row):
            if column == target:
                labels.append(cell.strip())
                continue
            values.append(_number(cell, line, header[column]))
        features.append(values)
    for line, cell in enumerate(labels, start=2):
        _number(cell, line, header[target])
    integral = all(re.fullmatch(r"[+-]?\d+", cell) for cell in labels)
    y = np.array([int(c) for c in labels]) if integral else np.array([float(c) for c in labels])
    return np.array(features, dtype=np.float64), y


def _read_parquet(path: Path, max_unpacked_bytes: int) -> tuple[np.ndarray[Any, Any], ...]:
    try:
        meta = pq.read_metadata(path)
        schema = meta.schema.to_arrow_schema()
    except (pa.ArrowException, OSError) as exc:
        raise UploadError(f"not a .parquet file: {exc}") from None
    unpacked = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if unpacked > max_unpacked_bytes:
        raise UploadError(f"the table unpacks to {unpacked} bytes, over {max_unpacked_bytes}")
    names = list(schema.names)
    if len(names) < 2 or len(set(names)) != len(names):
        raise UploadError("the .parquet needs uniquely named feature columns and a y column")
    for column in schema:
        if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
            raise UploadError(
                f"column {column.name!r} has type {column.type}; every column must hold numbers"
            )
    target = next((name for name in names if name in TARGET_COLUMNS), names[-1])
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise UploadError(f"unreadable .parquet: {exc}") from None
    missing = [name for name in names if table.column(name).null_count]
    if missing:
        raise UploadError(f"columns {missing} have missing values; fill or drop those rows")
    features = [table.column(name).to_numpy() for name in names if name != target]
    return np.column_stack(features).astype(np.float64), table.column(target).to_numpy()


def _number(cell: str, line: int, column: str) -> float:
    try:
        return float(cell)
    except ValueError:
        raise UploadError(f"line {line}, column {column!r}: {cell!r} is not a number") from None


def validate(x: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> Arrays:
    """Shapes, dtypes and values; y of shape (N,) with float targets becomes (N, 1)."""
    if x.dtype.kind not in "fiu":
        raise UploadError(f"x has dtype {x.dtype}; it must hold float or integer features")
    if y.dtype.kind not in "fiu":
        raise UploadError(
            f"y has dtype {y.dtype}; it must hold integer labels 0..C-1 or float targets"
        )
    if not 2 <= x.ndim <= 4:
        raise UploadError(f"x has shape {x.shape}; it must be (N, features) or (N, C, H, W)")
    if x.shape[0] != y.shape[0] or y.ndim == 0:
        raise UploadError(f"x has {x.shape[0]} rows but y has shape {y.shape}; they must match")
    if x.shape[0] < 2 or x[0].size == 0:
        raise UploadError("the data set needs at least two samples and one feature")
    for name, values in (("x", x), ("y", y)):
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            raise UploadError(f"{name} contains NaN or infinite values")
    if y.dtype.kind in "iu":
        if y.ndim != 1:
            raise UploadError(f"integer labels must have shape (N,), got {y.shape}")
        low, high = int(y.min()), int(y.max())
        if low < 0 or high < 1 or high >= MAX_CLASSES:
            raise UploadError(
                f"integer labels must run 0..C-1 with 2 <= C <= {MAX_CLASSES}; got {low}..{high}"
            )
    elif y.ndim > 2:
        raise UploadError(f"float targets must have shape (N,) or (N, k), got {y.shape}")
    return Arrays(x, y if y.ndim == 2 or y.dtype.kind in "iu" else y[:, None])


class UploadSettings(ClassificationSettings):
    """A data set the team uploaded, by its id (from POST /v1/datasets)."""

    dataset: str = Field(..., pattern=UUID_PATTERN, description="the id POST /v1/datasets gave")
    standardize: bool = Field(True, description="scale features by training mean and std")

    def known_task(self) -> Task | None:
        return None  # classification or regression: the file tells


@DATASETS.register(
    "upload",
    settings=UploadSettings,
    summary="a data set your team uploaded (.npz, .csv or .parquet), by id",
)
def build_upload(
    s: UploadSettings, seed: int, resolve_dataset: DatasetResolver | None = None
) -> DataBundle:
    if resolve_dataset is None:
        raise DataError(
            "data set 'upload' is resolved by the service: submit the job through the API"
        )
    path, fmt = resolve_dataset(s.dataset)
    try:
        arrays = read_upload(path, fmt)
    except UploadError as exc:
        raise DataError(f"uploaded data set {s.dataset}: {exc}") from None
    x = torch.tensor(arrays.x, dtype=torch.float32)
    train_idx, val_idx = split_indices(len(x), s.val_fraction, seed)
    if s.standardize:  # training statistics only, so validation stays unseen
        mean, std = x[train_idx].mean(0), x[train_idx].std(0)
        x = (x - mean) / torch.where(std > 0, std, torch.ones_like(std))
    if arrays.task == "classification":
        y = torch.tensor(arrays.y, dtype=torch.long)
        info = DataInfo(tuple(x.shape[1:]), int(y.max()) + 1)
        train_y = noisy_labels(y[train_idx], info.num_classes, s, seed)
    else:
        if s.label_noise > 0:
            raise DataError(f"uploaded data set {s.dataset} has float targets: no label_noise")
        y = torch.tensor(arrays.y, dtype=torch.float32)
        info = DataInfo(tuple(x.shape[1:]), y.shape[1], task="regression")
        train_y = y[train_idx]
    return DataBundle(x[train_idx], train_y, x[val_idx], y[val_idx], info, s.batch_size)


def load_data(
    settings: Any, seed: int, resolve_dataset: DatasetResolver | None = None
) -> DataBundle:
    """The job's data; only an uploaded set needs the resolver (the service's database)."""
    if isinstance(settings, UploadSettings):
        return build_upload(settings, seed, resolve_dataset)
    bundle: DataBundle = DATASETS.build(settings, seed=seed)
    return bundle
