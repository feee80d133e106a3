"""Express runs whose files never came: the tab was closed before or during the upload. Such a run waits in its
"upload" phase, and its dataset, made when the run began, sits empty in the dataset list under the trigger word's
name. After ABANDONED_S without an upload chunk arriving, the run is stopped, saying so, and its dataset goes to
Recently deleted if it is still empty (a dataset filled by hand in the dataset manager stays).

It runs when the web app starts and when a new run begins. A run waiting for its files is never counted as work
(studio.jobs.JobStore.count: work=True), so it keeps neither the pod busy nor from stopping meanwhile.
"""

from __future__ import annotations

import logging
import time

from app import context, trash
from app.store import NotFound
from studio import chunked

log = logging.getLogger(__name__)

ABANDONED_S = 6 * 3600
CLOSED = ("Closed: no files arrived for {hours} hours after the run began{removed}. Start a new run on the Express "
          "page to go on.")


def close_abandoned(now: float | None = None) -> list[str]:
    """Stop every express run that waited ABANDONED_S for its files; returns their ids."""
    now = time.time() if now is None else now
    jobs, closed = context.jobs(), []
    for run in jobs.list(("running",), kind="express", limit=1000):
        if run.phase != "upload":
            continue
        uploads = chunked.last_activity(context.workspace().uploads, {"dataset": run.dataset})
        if now - max(run.updated_at, uploads or 0) < ABANDONED_S or jobs.count(("queued", "running"),
                                                                              dataset=run.dataset, work=True):
            continue  # files still arriving, or being imported into its dataset by hand
        removed = ""
        try:
            dataset = context.dataset(run.dataset)
            if not dataset.image_names():
                name = dataset.meta().get("name") or dataset.id
                trash.delete_dataset(context.store(), dataset)
                jobs.delete_dataset_jobs(dataset.id)
                removed = f"; its empty dataset {name} went to Recently deleted"
        except NotFound:
            pass
        jobs.finish(run.id, "stopped", message=CLOSED.format(hours=ABANDONED_S // 3600, removed=removed))
        log.info("express run %s closed: no files arrived%s", run.id, removed)
        closed.append(run.id)
    return closed
