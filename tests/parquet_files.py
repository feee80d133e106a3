"""Parquet files laid out the way `datasets.push_to_hub` writes them: an Image column (a struct of `bytes` and
`path`), a caption column, and the features in the schema's "huggingface" metadata."""

from __future__ import annotations

import io
import json


def parquet_bytes(rows: list[dict], features: dict | None = None, row_group_size: int = 2,
                  compression: str = "snappy") -> bytes:
    """`rows` as a Parquet file; an "image" given as (bytes, path) becomes the Image struct (a list of them a list
    of Image structs). `features` (when
    given) goes into the schema's metadata the way the datasets library writes it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, list] = {}
    for row in rows:
        for name, value in row.items():
            if isinstance(value, tuple):
                value = {"bytes": value[0], "path": value[1]}
            elif isinstance(value, list) and value and isinstance(value[0], tuple):  # a list of images
                value = [{"bytes": data, "path": path} for data, path in value]
            columns.setdefault(name, []).append(value)
    table = pa.table(columns)
    if features is not None:
        table = table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=row_group_size, compression=compression)
    return sink.getvalue()


HF_FEATURES = {"image": {"_type": "Image"}, "text": {"dtype": "string", "_type": "Value"}}
