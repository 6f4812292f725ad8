"""What a logged value is as a column of the reference's kind takes it: shared by the line reader
and the columnar one (:mod:`shipml.monitor._columnar`)."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pandas as pd

#: the strings the prediction log writes for non-finite floats (proto3's JSON mapping)
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
#: what a column holds, as the reference has it
Kind = Literal["number", "text"]
_CONTAINERS = (dict, list, tuple, np.ndarray)


def conform(values: pd.Series, kind: Kind, *, numbers_as_text: bool = False
            ) -> tuple[pd.Series, int]:
    """Return ``values`` as a column of ``kind`` takes them (a number column as floats, the
    non-finite strings and booleans included), and the position of the first value it does not
    take (-1 when there is none). ``numbers_as_text``: text that reads as a number is one (a
    CSV column with one cell of text is read as text throughout)."""
    dtype_kind = values.dtype.kind
    if kind == "text":
        if dtype_kind != "O":
            return values, -1
        for position, value in enumerate(values.to_numpy()):
            if isinstance(value, _CONTAINERS):
                return values, position
        return values, -1
    if dtype_kind in "iuf":
        return values, -1
    if dtype_kind == "b":
        return values.astype(np.float64), -1
    numbers = np.empty(len(values), dtype=np.float64)
    for position, value in enumerate(values.to_numpy(dtype=object)):
        if value is None:
            numbers[position] = math.nan
        elif type(value) is str:
            number = NON_FINITE.get(value)
            if number is None and numbers_as_text:
                try:
                    number = float(value)
                except ValueError:
                    pass
            if number is None:
                return values, position
            numbers[position] = number
        elif isinstance(value, (int, float, np.integer, np.floating, np.bool_)):
            try:
                numbers[position] = float(value)
            except OverflowError:  # an integer past float's range: as far out as a float goes
                numbers[position] = math.inf if value > 0 else -math.inf
        elif value is pd.NA or value is pd.NaT:
            numbers[position] = math.nan
        else:
            return values, position
    return pd.Series(numbers, index=values.index, name=values.name), -1
