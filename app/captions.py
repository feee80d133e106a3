"""Captions: single edits with conflict detection, bulk find/replace, prepend/append, and undo."""

from __future__ import annotations

import contextvars
import time
import unicodedata

import regex
from flask import Blueprint, jsonify

from app import context
from app.caption_files import StagedWrites
from app.caption_regex import TooBig, TooLong, TooSlow, compile_find, replace_all
from app.store import Conflict, Dataset, caption_version
from studio.atomic import atomic_write_json, read_json
from studio.web import ApiError, json_body

bp = Blueprint("captions", __name__)
CAPTION_MAX = 10_000
PREVIEW_ROWS = 200
_staged: contextvars.ContextVar[StagedWrites | None] = contextvars.ContextVar("staged_captions", default=None)


def set_caption(dataset: Dataset, name: str, text: str) -> int:
    """Write (or, for empty text, remove) a caption; call with the dataset lock held. Within `write_captions`, the
    caption it staged is put in place."""
    staged = _staged.get()
    if staged is not None and text.strip() and (placed := staged.place(name, text.strip())):
        return caption_version(placed)
    if text.strip():
        return dataset.write_caption(name, text.strip())
    dataset.caption_path(name).unlink(missing_ok=True)
    return 0


def write_captions(dataset: Dataset, texts: dict[str, str]) -> None:
    """set_caption for each caption of a bulk change, in order, each one still replaced atomically; their files are
    written and synced to the disk together first (app.caption_files), so 3,000 captions take one sync, not 3,000.
    Call with the dataset lock held."""
    with StagedWrites({name: (dataset.caption_path(name), text.strip()) for name, text in texts.items()
                       if text.strip()}) as staged:
        token = _staged.set(staged)
        try:
            for name, text in texts.items():
                set_caption(dataset, name, text)
        finally:
            _staged.reset(token)


def _too_long(name: str, length: int, more: bool = False) -> str:
    return (f"This change would make the caption of {name} {'more than ' if more else ''}{length:,} characters long; "
            f"a caption holds {CAPTION_MAX:,} at most, so nothing was changed.")


def _check_length(name: str, text: str) -> None:
    """A bulk change leaves no caption longer than the editor can save (CAPTION_MAX); nothing is written otherwise."""
    if len(text.strip()) > CAPTION_MAX:
        raise ApiError(_too_long(name, len(text.strip())), 422)


def save_undo(dataset: Dataset, op: str, before: dict[str, str | None],
              after: dict[str, str | None] | None = None, run: tuple[str, float] | None = None) -> None:
    """Remember the captions a bulk change replaced, and what it left (`after`, read now when not given: a change
    that writes over a while, auto-caption, gives what it wrote), so the last bulk change can be undone without
    undoing an edit made since (undo restores only the captions still as the change left them). `run`: (id, start
    time) of a change that saves its undo as it goes (auto-caption): a bulk change made since it started (a find &
    replace during the run) is not replaced, as the newer change is the one Undo takes back."""
    if not before:
        return
    path = dataset.folder / ".undo.json"
    with dataset.lock():
        if run is not None:
            current = read_json(path, None)
            if isinstance(current, dict) and current.get("run") != run[0] and float(current.get("at") or 0) >= run[1]:
                return
        after = {name: dataset.read_caption(name) for name in before} if after is None else after
        atomic_write_json(path, {"op": op, "at": time.time(), "captions": before, "after": after,
                                 **({"run": run[0]} if run is not None else {})})


@bp.put("/api/datasets/<dataset_id>/captions/<name>")
def put_caption(dataset_id: str, name: str):
    dataset = context.dataset(dataset_id)
    body = json_body()
    text = body.get("caption")
    if not isinstance(text, str):
        raise ApiError("'caption' must be text.", 422)
    if len(text) > CAPTION_MAX:
        raise ApiError(f"The caption is too long ({CAPTION_MAX:,} characters at most).", 422)
    base = body.get("base_version")
    if base is not None and (not isinstance(base, int) or isinstance(base, bool)):
        raise ApiError("'base_version' must be the version number the edit started from.", 422)
    with dataset.lock():
        dataset.require_image(name)
        current = caption_version(dataset.caption_path(name))
        if base is not None and base != current:
            raise Conflict("This caption was changed elsewhere since you opened it: review the current text.",
                           {"caption": dataset.read_caption(name) or "", "version": current})
        version = set_caption(dataset, name, text)
    return jsonify({"name": name, "caption": text.strip(), "version": version})


def _pattern(body: dict) -> regex.Pattern:
    find = body.get("find")
    if not isinstance(find, str) or find == "":
        raise ApiError("Type the text to find.", 422)
    try:  # composed (NFC), as the captions are matched: "é" typed finds an "e" with its accent apart, too
        return compile_find(unicodedata.normalize("NFC", find), bool(body.get("regex")),
                            bool(body.get("case_sensitive")))
    except TooBig as exc:
        raise ApiError(str(exc), 422) from None
    except regex.error as exc:
        raise ApiError(f"The regular expression is invalid: {exc}.", 422) from None


@bp.post("/api/datasets/<dataset_id>/captions/replace")
def find_replace(dataset_id: str):
    """`{"find", "replace", "regex", "case_sensitive", "apply": false}`: preview unless apply is true. A pattern
    that runs too long (app.caption_regex) is stopped with a 422 before anything is written."""
    dataset = context.dataset(dataset_id)
    body = json_body()
    pattern = _pattern(body)
    replacement = body.get("replace", "")
    if not isinstance(replacement, str):
        raise ApiError("'replace' must be text.", 422)
    if len(replacement) > CAPTION_MAX:
        raise ApiError(f"The replacement is too long ({CAPTION_MAX:,} characters at most).", 422)
    replacement = unicodedata.normalize("NFC", replacement)
    if not body.get("regex"):
        replacement = replacement.replace("\\", "\\\\")
    with dataset.lock():
        originals = {name: text for name, text in dataset.read_captions(dataset.image_names()).items() if text}
        try:
            changes = replace_all(pattern, replacement, [(name, unicodedata.normalize("NFC", text))
                                                         for name, text in originals.items()], max_length=CAPTION_MAX)
        except TooSlow as exc:
            raise ApiError(str(exc), 422) from None
        except TooLong as exc:
            raise ApiError(_too_long(exc.name, exc.length, exc.more), 422) from None
        except (regex.error, IndexError) as exc:
            raise ApiError(f"The replacement is invalid: {exc}.", 422) from None
        for change in changes:
            change.before = originals[change.name]  # as it is on disk, for the undo
        if body.get("apply"):  # the undo first: a change cut short (a killed worker, a full disk) can be undone
            save_undo(dataset, "find/replace", {change.name: change.before for change in changes},
                      {change.name: change.after.strip() for change in changes})
            write_captions(dataset, {change.name: change.after for change in changes})
    rows = [{"name": c.name, "before": c.before, "after": c.after.strip(), "count": c.count} for c in changes]
    return jsonify({"applied": bool(body.get("apply")), "images": len(rows),
                    "replacements": sum(c.count for c in changes), "rows": rows[:PREVIEW_ROWS]})


def _has_at(text: str, part: str, start: bool) -> bool:
    """Whether `text` already starts (or ends) with `part`, as whole words, in any case: added again, it would be
    there twice ("mycat, mycat, a cat" after a second Apply, or one made for the images added since)."""
    if not part:
        return False
    edge = rf"{regex.escape(part)}(?!\w)" if start else rf"(?<!\w){regex.escape(part)}$"
    return bool((regex.match if start else regex.search)(edge, text, regex.IGNORECASE))


@bp.post("/api/datasets/<dataset_id>/captions/affix")
def affix(dataset_id: str):
    """`{"prepend": "...", "append": "...", "separator": ", ", "names": [...]?}` on captioned images; a caption that
    already starts with `prepend` (or ends with `append`) does not get it twice."""
    dataset = context.dataset(dataset_id)
    body = json_body()
    prepend, append = body.get("prepend") or "", body.get("append") or ""
    separator = body.get("separator", ", ")
    if not all(isinstance(v, str) for v in (prepend, append, separator)):
        raise ApiError("'prepend', 'append' and 'separator' must be text.", 422)
    prepend, append = prepend.strip(), append.strip()
    if not prepend and not append:
        raise ApiError("Type text to prepend or append.", 422)
    names = body.get("names")
    with dataset.lock():
        targets = dataset.image_names()
        if names is not None:
            if not isinstance(names, list):
                raise ApiError("'names' must be a list of image names.", 422)
            wanted = set(names)
            targets = [n for n in targets if n in wanted]
        before: dict[str, str | None] = {}
        planned: dict[str, str] = {}
        for name, old in dataset.read_captions(targets).items():
            text = (old or "").strip()
            parts = [p for p in ("" if _has_at(text, prepend, True) else prepend, text,
                                 "" if _has_at(text, append, False) else append) if p]
            new = separator.join(parts)
            if new != (old or ""):
                _check_length(name, new)
                before[name], planned[name] = old, new
        save_undo(dataset, "prepend/append", before, planned)  # first: a change cut short can be undone
        write_captions(dataset, planned)
    return jsonify({"changed": len(before)})


@bp.get("/api/datasets/<dataset_id>/captions/undo")
def undo_info(dataset_id: str):
    dataset = context.dataset(dataset_id)
    undo = read_json(dataset.folder / ".undo.json", None)
    if not undo:
        return jsonify({"available": False})
    return jsonify({"available": True, "op": undo["op"], "at": undo["at"], "images": len(undo["captions"])})


@bp.post("/api/datasets/<dataset_id>/captions/undo")
def undo(dataset_id: str):
    dataset = context.dataset(dataset_id)
    with dataset.lock():
        path = dataset.folder / ".undo.json"
        saved = read_json(path, None)
        if not saved:
            raise ApiError("There is no bulk change to undo.", 409)
        restore, kept = {}, []
        after = saved.get("after")  # absent in an undo file of an earlier release: everything goes back
        names = [name for name in saved["captions"] if dataset.image_path(name).is_file()]
        for name, current in dataset.read_captions(names).items():
            text, current = saved["captions"][name], current or None
            if current == (text or None):
                continue  # as it was before: a change cut short before it came to this caption
            if isinstance(after, dict) and current != (after.get(name) or None):
                kept.append(name)  # edited since the bulk change: that edit stays
                continue
            restore[name] = text or ""
        write_captions(dataset, restore)
        path.unlink()
    return jsonify({"restored": len(restore), "op": saved["op"], "kept": kept})
