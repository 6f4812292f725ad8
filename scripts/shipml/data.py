"""Tabular data sets (CSV or Parquet) and the ``model:`` keys that describe them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from shipml.errors import ConfigError, did_you_mean, first_line

Task = Literal["binary", "multiclass", "regression"]
TASKS: tuple[Task, ...] = ("binary", "multiclass", "regression")
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")


@dataclass(frozen=True)
class Table:
    """A loaded data set: the frame and where it came from (for messages)."""

    frame: pd.DataFrame
    source: str

    @property
    def columns(self) -> list[str]:
        """Return the column names, in file order."""
        return [str(column) for column in self.frame.columns]


def load_table(path: Path, key: str) -> Table:
    """Read a CSV/TSV or Parquet file named by config key ``key``.

    Raises ConfigError when the file is missing, of an unknown type, unreadable or has no rows.
    """
    if not path.exists():
        raise ConfigError(f"{key}: data file {path} not found")
    if path.is_dir():
        raise ConfigError(f"{key}: {path} is a directory; expected a CSV or Parquet file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path)
        elif suffix == ".tsv":
            frame = pd.read_csv(path, sep="\t")
        elif suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            raise ConfigError(
                f"{key}: {path} has an unknown type {suffix or '(no suffix)'!r}; "
                f"valid: {', '.join(TABLE_SUFFIXES)}"
            )
    except ImportError:
        raise ConfigError(
            f"{key}: reading Parquet ({path}) needs pyarrow: pip install pyarrow (or "
            "pip install \"shipml[validate]\")"
        ) from None
    except pd.errors.EmptyDataError:
        raise ConfigError(f"{key}: data file {path} is empty (no header, no rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise ConfigError(f"{key}: cannot read {path}: {first_line(exc)}") from None
    frame.columns = [str(column) for column in frame.columns]
    if frame.empty:
        raise ConfigError(f"{key}: data file {path} has no rows")
    return Table(frame=frame, source=str(path))


def require_label(table: Table, label: str, key: str) -> None:
    """Raise ConfigError unless ``label`` is a column of ``table`` with at least one value."""
    if label not in table.frame.columns:
        hint = did_you_mean(label, table.columns, cutoff=0.6)
        raise ConfigError(
            f"{table.source}: label column {label!r} (from {key}) is not in the data{hint} "
            f"(columns: {', '.join(table.columns)})"
        )
    if table.frame[label].isna().all():
        raise ConfigError(f"{table.source}: label column {label!r} has no values (all NaN)")


def infer_task(label_values: pd.Series, model_classes: int | None) -> Task:
    """Return the task a model and its labels describe.

    A model with class probabilities is a classifier (binary with two classes); without them, a
    float label with many distinct values is a regression.
    """
    if model_classes is not None:
        return "binary" if model_classes <= 2 else "multiclass"
    values = label_values.dropna()
    if pd.api.types.is_float_dtype(values) and values.nunique() > 20:
        return "regression"
    if pd.api.types.is_numeric_dtype(values) and values.nunique() > 20:
        return "regression"
    return "binary" if values.nunique() <= 2 else "multiclass"


def infer_categorical(frame: pd.DataFrame, features: list[str]) -> list[str]:
    """Return the features that are categorical by type (strings, categories, booleans)."""
    found = []
    for name in features:
        dtype = frame[name].dtype
        if (
            pd.api.types.is_object_dtype(dtype)
            or isinstance(dtype, pd.CategoricalDtype)
            or pd.api.types.is_bool_dtype(dtype)
            or pd.api.types.is_string_dtype(dtype)
        ):
            found.append(name)
    return found

