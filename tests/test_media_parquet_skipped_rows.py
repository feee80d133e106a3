"""A Parquet table whose image column mostly holds something else (a million rows of text bytes, a column of
file paths): the rows skipped are listed up to MAX_SKIPPED_LISTED, the others counted in one line, so an import's
result (kept with its job, sent to the page) stays small; the images among them are still taken."""

from __future__ import annotations

from app import parquet_import
from tests.parquet_files import HF_FEATURES, parquet_bytes
from tests.test_datasets_support import image_bytes


class _Job:
    def check_stop(self) -> None:
        pass

    def update(self, **values) -> None:
        pass


def test_many_rows_without_an_image_are_counted_not_listed_one_by_one(tmp_path):
    junk = parquet_import.MAX_SKIPPED_LISTED + 250
    rows = [{"image": (f"row {i} is text".encode(), f"{i}.txt"), "text": "x"} for i in range(junk)]
    rows[7] = {"image": (image_bytes(1), "cat.png"), "text": "a cat"}
    rows.append({"image": (image_bytes(2), "dog.png"), "text": "a dog"})
    source = tmp_path / "mixed.parquet"
    source.write_bytes(parquet_bytes(rows, HF_FEATURES, row_group_size=64))
    out = parquet_import.extract_parquet(source, tmp_path / "staged", _Job(), 2**30, "mixed.parquet")
    assert [row.name for row in out.rows] == ["cat.png", "dog.png"]
    assert len(out.skipped) == parquet_import.MAX_SKIPPED_LISTED + 1
    assert out.skipped[0] == {"name": "mixed.parquet row 0 (0.txt)", "reason": "not an image"}
    assert out.skipped[-1]["name"] == "mixed.parquet: 249 more rows"
    assert "only the first 100 are listed" in out.skipped[-1]["reason"]


def test_a_few_rows_without_an_image_are_each_listed(tmp_path):
    rows = [{"image": (b"text", f"{i}.txt"), "text": "x"} for i in range(5)] + \
        [{"image": (image_bytes(3), "bird.png"), "text": "a bird"}]
    source = tmp_path / "few.parquet"
    source.write_bytes(parquet_bytes(rows, HF_FEATURES))
    out = parquet_import.extract_parquet(source, tmp_path / "staged", _Job(), 2**30, "few.parquet")
    assert [row.name for row in out.rows] == ["bird.png"]
    assert [entry["name"] for entry in out.skipped] == [f"few.parquet row {i} ({i}.txt)" for i in range(5)]
