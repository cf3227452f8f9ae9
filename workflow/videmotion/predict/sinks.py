"""Parquet output: the schemas of frames.parquet and windows.parquet, the sink that writes a
video's rows as they come (memory flat in video length), and the combined tables of many videos."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..stores import atomic_output

# Rows per Parquet row group (at least): a few MB of frame rows, or of window rows with their lists, held until written.
FRAME_ROW_GROUP = 2048
WINDOW_ROW_GROUP = 256


def frames_schema(classes: list[str]) -> pa.Schema:
    fields = [
        ("video", pa.string()),
        ("frame", pa.int64()),
        ("time_s", pa.float64()),
        ("processed", pa.bool_()),
        ("face", pa.bool_()),
        ("track", pa.int32()),
        ("x", pa.float32()),
        ("y", pa.float32()),
        ("w", pa.float32()),
        ("h", pa.float32()),
        ("detector", pa.string()),
        ("score", pa.float32()),
        ("aligned", pa.bool_()),
    ]
    return pa.schema(fields + [(f"p_{c}", pa.float32()) for c in classes])


def windows_schema(classes: list[str]) -> pa.Schema:
    fields = [
        ("video", pa.string()),
        ("track", pa.int32()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("n_faces", pa.int32()),
    ]
    fields += [(f"p_{c}", pa.float32()) for c in classes]
    fields += [("label", pa.string()), ("frame_index", pa.list_(pa.int64())), ("attention", pa.list_(pa.float32()))]
    return pa.schema(fields)


class _ParquetSink:
    """Rows appended to one Parquet file (written under a temporary name; see stores.atomic_output).

    Chunks are gathered into row groups of at least `row_group_rows` rows, as plain columns
    (NumPy arrays and lists): the writer keeps every row group's metadata until it closes
    (about 17 KB per row group of frame rows), and a small Arrow table held per chunk costs
    about as much, so either would make memory grow with video length."""

    def __init__(self, stack: ExitStack, path: str | Path, schema: pa.Schema, row_group_rows: int):
        self.schema, self.row_group_rows = schema, row_group_rows
        self.tmp = stack.enter_context(atomic_output(path))
        self.writer = pq.ParquetWriter(self.tmp, schema)
        self.pending: dict[str, list] = {name: [] for name in schema.names}
        self.pending_rows = self.rows = 0

    def write(self, columns: dict[str, Any]) -> None:
        n = len(next(iter(columns.values())))
        for name in self.schema.names:
            value = columns[name]
            self.pending[name].append(value if isinstance(value, np.ndarray) else list(value))
        self.pending_rows += n
        self.rows += n
        if self.pending_rows >= self.row_group_rows:
            self._write_pending()

    def _write_pending(self) -> None:
        if not self.pending_rows:
            return
        columns = {}
        for name, parts in self.pending.items():
            if isinstance(parts[0], np.ndarray):
                columns[name] = np.concatenate(parts)
            else:
                columns[name] = [v for part in parts for v in part]
        self.writer.write_table(pa.table(columns, schema=self.schema))
        self.pending = {name: [] for name in self.schema.names}
        self.pending_rows = 0

    def close(self) -> None:
        self._write_pending()
        if self.rows == 0:
            self.writer.write_table(self.schema.empty_table())
        self.writer.close()


# ---------------------------------------------------------------------------- combined tables


def combine_parquet(parts: list[str | Path], path: str | Path, schema: pa.Schema | None = None) -> int:
    """The per-video Parquet files one after the other in one file, row group by row group
    (memory stays flat); returns the rows written. With no parts, an empty table of `schema`."""
    rows = 0
    with atomic_output(path) as tmp:
        writer = None
        for part in parts:
            source = pq.ParquetFile(part)
            if writer is None:
                schema = source.schema_arrow
                writer = pq.ParquetWriter(tmp, schema)
            for i in range(source.num_row_groups):
                table = source.read_row_group(i)
                writer.write_table(table.cast(schema))
                rows += table.num_rows
        if writer is None:
            if schema is None:
                raise ValueError("combine_parquet: no parts and no schema")
            writer = pq.ParquetWriter(tmp, schema)
            writer.write_table(schema.empty_table())
        writer.close()
    return rows
