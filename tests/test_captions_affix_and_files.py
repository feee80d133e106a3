"""Prepend/append never doubles what a caption already has (the trigger word added again for the images uploaded
since), and a metadata file saved by a Windows tool (UTF-16, Excel's Windows-1252 CSV) gives its captions as written,
not as UTF-8 with holes and NULs, with a note when it had to guess."""

from __future__ import annotations

import codecs

import pytest

from app.caption_files import NOT_UTF8, decode_caption_file, metadata_captions
from tests import test_datasets_support as support
from tests.test_datasets_support import image_bytes, upload

ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id


def _captions(client, dataset_id) -> dict[str, str]:
    images = client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"]
    return {image["name"]: image["caption"] for image in images}


def test_prepending_the_trigger_word_again_does_not_double_it(client, dataset_id):
    upload(client, dataset_id, [("a.png", image_bytes(1)), ("a.txt", b"a cat on a mat"),
                                ("b.png", image_bytes(2)), ("b.txt", b"a cat, film grain")])
    url = f"/api/datasets/{dataset_id}/captions/affix"
    assert client.post(url, json={"prepend": "mycat"}).get_json() == {"changed": 2}
    # new images come; the same Apply again reaches them, and only them
    upload(client, dataset_id, [("c.png", image_bytes(3)), ("c.txt", b"a cat asleep"), ("d.png", image_bytes(4))])
    assert client.post(url, json={"prepend": "MyCat", "append": "film grain"}).get_json() == {"changed": 3}
    assert _captions(client, dataset_id) == {"a.png": "mycat, a cat on a mat, film grain",
                                             "b.png": "mycat, a cat, film grain",
                                             "c.png": "MyCat, a cat asleep, film grain", "d.png": "MyCat, film grain"}
    assert client.post(url, json={"prepend": "mycat", "append": "film grain"}).get_json() == {"changed": 0}
    # a word that only begins like it is not it
    client.put(f"/api/datasets/{dataset_id}/captions/d.png", json={"caption": "mycatalogue photo"})
    client.post(url, json={"prepend": "mycat", "names": ["d.png"]})
    assert _captions(client, dataset_id)["d.png"] == "mycat, mycatalogue photo"


@pytest.mark.parametrize("data, text, note", [
    ("crème brûlée".encode(), "crème brûlée", None),
    (codecs.BOM_UTF8 + "crème".encode(), "crème", None),
    ("crème brûlée".encode("utf-16"), "crème brûlée", None),  # Notepad's "Unicode": a BOM, then UTF-16
    (codecs.BOM_UTF16_BE + "crème brûlée".encode("utf-16-be"), "crème brûlée", None),
    ("crème brûlée “quoted”".encode("cp1252"), "crème brûlée “quoted”", NOT_UTF8),
])
def test_caption_files_of_windows_tools_are_read_as_written(data, text, note):
    assert decode_caption_file(data) == (text, note)


def test_an_excel_csv_gives_its_accents_and_says_it_guessed(tmp_path):
    path = tmp_path / "metadata.csv"
    path.write_bytes("file_name,text\r\na.png,crème brûlée\r\nb.png,\r\n".encode("cp1252"))
    captions, problem = metadata_captions(path, "metadata.csv")
    assert list(captions.values()) == ["crème brûlée"]
    assert problem == f"1 row(s) without a file_name and a caption were left out; {NOT_UTF8}"
    path.write_bytes("file_name,text\na.png,crème\n".encode("utf-16"))
    assert list(metadata_captions(path, "metadata.csv")[0].values()) == ["crème"]
    assert metadata_captions(path, "metadata.csv")[1] is None


def test_a_zip_with_an_excel_metadata_csv_imports_its_accents(client, dataset_id):
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("d.png", image_bytes(4))
        archive.writestr("metadata.csv", "file_name,text\nd.png,crème brûlée\n".encode("cp1252"))
    job = upload(client, dataset_id, [("set.zip", buffer.getvalue())])
    assert _captions(client, dataset_id) == {"d.png": "crème brûlée"}
    assert any(NOT_UTF8 in item["reason"] for item in job["result"]["skipped"]), job["result"]


@pytest.mark.parametrize("raw", [codecs.BOM_UTF16_LE + "crème brûlée, a cat".encode("utf-16-le"),
                                 "crème brûlée, a cat".encode("cp1252"),
                                 codecs.BOM_UTF8 + "crème brûlée, a cat".encode()])
def test_a_caption_txt_from_a_windows_editor_arrives_as_written(client, dataset_id, raw):
    """A .txt caption saved by Notepad ("Unicode") or in Windows-1252 came in as `\ufffd\ufffdc\x00r\x00…` or with
    holes for its accented letters, whether loose or in a ZIP."""
    upload(client, dataset_id, [("a.png", image_bytes(1)), ("a.txt", raw)])
    upload(client, dataset_id, [("pack.zip", support.zip_bytes([("b.png", image_bytes(2)), ("b.txt", raw)]))])
    assert _captions(client, dataset_id) == {"a.png": "crème brûlée, a cat", "b.png": "crème brûlée, a cat"}


def test_a_caption_cut_at_the_read_limit_keeps_its_letters_and_a_bom_put_in_by_hand_is_not_text(client, dataset_id,
                                                                                               studio_root):
    assert decode_caption_file("é".encode() * 3 + "é".encode()[:1]) == ("ééé", None)  # cut inside its last letter
    upload(client, dataset_id, [("a.png", image_bytes(1))])
    (studio_root / "datasets" / dataset_id / "a.txt").write_bytes(codecs.BOM_UTF8 + b"a cat")  # beside, by hand
    assert _captions(client, dataset_id) == {"a.png": "a cat"}
