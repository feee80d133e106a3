"""Images the caption stage left without a caption, before they train on the trigger word alone.

The caption service may refuse an image (a 4xx answer) or fail on it; the caption job records each as an error
({"item": name, "message": why}) and completes, and the export gives such an image the trigger word as its whole
caption. So that this is a choice and not a surprise, the chain waits after the caption stage while images of the
export have no caption: the page says how many and why, and offers to caption them again or to train anyway. Nobody
answering within HOLD_S (the page may be closed: the run is meant to go on unattended), it trains anyway.

What was found is kept in the express row's details ("uncaptioned"), keyed by the caption job it follows, so the
training step, the plan's warnings and the finished result can say it too.
"""

from __future__ import annotations

import time

from app import context
from app.express_rules import caption_options
from studio.jobs import Job, JobStateError
from studio.text import plural
from studio.web import ApiError

HOLD_S = 180.0  # the GPU waits idle meanwhile: long enough to answer, short enough not to cost much
KEY = "uncaptioned"
NAMES_KEPT = 200  # names recorded (the count is exact)
CHOICES = ("caption", "train")


def _missing(express: Job) -> tuple[list[str], int]:
    """(images of the export without a caption, images in the export)."""
    from app.export import export_selection

    dataset = context.dataset(express.dataset)
    names, _ = export_selection(dataset.meta())
    return [name for name in names if not (dataset.read_caption(name) or "").strip()], len(names)


def _reasons(express: Job, names: list[str]) -> list[dict]:
    """Why each image has no caption, as the chain's caption jobs said (the newest first), grouped by reason."""
    why: dict[str, str] = {}
    for job in context.jobs().list(parent_id=express.id, kind="caption", limit=100):
        for error in job.errors:
            if isinstance(error, dict):
                why.setdefault(str(error.get("item")), str(error.get("message") or "no reason given"))
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(why.get(name, "no caption was made"), []).append(name)
    return [{"reason": reason, "count": len(found), "names": found[:5]}
            for reason, found in sorted(groups.items(), key=lambda item: -len(item[1]))]


def holding(express: Job, caption: Job) -> bool:
    """Called when the caption stage (`caption`) completed: whether the chain waits for the user's choice."""
    record = express.details.get(KEY)
    if not record or record.get("job") != caption.id:  # first look after this caption job: what did it leave?
        names, images = _missing(express)
        if not names:
            context.jobs().progress(express.id, {KEY: None})
            return False
        record = {"job": caption.id, "count": len(names), "images": images, "names": names[:NAMES_KEPT],
                  "reasons": _reasons(express, names), "since": time.time(), "choice": None}
        context.jobs().progress(express.id, {KEY: record, "message": _waiting_message(record)})
    if record.get("choice") == "train" or time.time() - float(record["since"]) >= HOLD_S:
        return False
    dataset = context.dataset(express.dataset)  # captioned by hand meanwhile: nothing left to choose
    return any(not (dataset.read_caption(name) or "").strip() for name in record["names"])


def _why(record: dict) -> str:
    return "; ".join(f"{plural(group['count'], 'image')}: {group['reason']}" for group in record["reasons"][:3])


def _waiting_message(record: dict) -> str:
    return (f"{record['count']} of {plural(record['images'], 'image')} have no caption ({_why(record)}). Caption them "
            "again, or train anyway: they then train on the trigger word alone. Training starts anyway in "
            f"{round(HOLD_S / 60)} minutes if you choose nothing.")


def _named(names: list[str], count: int) -> str:
    rest = count - min(3, len(names))
    return ", ".join(names[:3]) + (f" and {rest} more" if rest > 0 else "")


def summary(express: Job) -> dict | None:
    """What the page shows about images without a caption: how many, why, whether the run waits for a choice."""
    record = express.details.get(KEY)
    if not record:
        return None
    waiting = express.status == "running" and express.phase == "caption" and record.get("choice") is None
    left = max(0.0, float(record["since"]) + HOLD_S - time.time()) if waiting else None
    trained = "trained" if express.status == "completed" else "train"
    return {"count": record["count"], "images": record["images"], "names": record["names"][:20],
            "reasons": record["reasons"], "choice": record.get("choice"), "waiting": waiting,
            "trains_anyway_in_s": left,
            "text": f"{record['count']} of {plural(record['images'], 'image')} {trained} on the trigger word alone, "
                    f"without a caption ({_why(record)}): {_named(record['names'], record['count'])}."}


def plan_warning(express: Job) -> str | None:
    """The plan's warning for images that train without a caption (found when training starts)."""
    names, images = _missing(express)
    if not names:
        return None
    record = {"reasons": _reasons(express, names), "count": len(names)}
    return (f"{len(names)} of {plural(images, 'image')} train on the trigger word alone, without a caption "
            f"({_why(record)}): {_named(names, len(names))}. The LoRA learns less about what is in them; caption "
            "them on the Datasets page and train again to do better.")


def choose(express: Job, choice: str) -> None:
    """The user's answer while the chain waits: "caption" them again (a caption job for those images only), or
    "train" anyway. The caller holds the chain's lock (app.express.choose_uncaptioned)."""
    from app.autocaption import start_caption_job

    record = express.details.get(KEY)
    if choice not in CHOICES:
        raise ApiError(f"Choose one of {', '.join(CHOICES)}.", 422)
    if not record or express.status != "running" or express.phase != "caption" or record.get("choice"):
        raise JobStateError("This run is not waiting for a choice about images without a caption.")
    if choice == "train":
        context.jobs().progress(express.id, {KEY: {**record, "choice": "train"}, "message": "Training anyway."})
        return
    names, _ = _missing(express)
    if not names:  # captioned by hand meanwhile: the chain goes on
        return
    options = {**caption_options(express.config["kind"]), "names": names}
    start_caption_job(context.dataset(express.dataset), options, parent_id=express.id)  # 503: the service is down
    context.jobs().progress(express.id, {KEY: {**record, "choice": "caption"},
                                         "message": f"Captioning {plural(len(names), 'image')} again."})
