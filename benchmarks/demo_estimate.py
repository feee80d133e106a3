"""The new job form's time estimate for the demo model against the real job's wall time: a job on a fresh demo
workspace (noise images of 768 px, the recipe's defaults but for the steps, resolutions and anything given),
run by the worker in this process, from claim to done. Prints both and their ratio.

    python benchmarks/demo_estimate.py --steps 150 --resolutions 1024 [--images 6] [--config '{"sample_every": 100}']
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from studio.demo import ensure_demo_models  # noqa: E402
from studio.settings import load_settings  # noqa: E402
from studio.workspace import Workspace  # noqa: E402
from trainer.recipes import get_recipe  # noqa: E402
from trainer.worker import Worker  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--resolutions", default="1024", help="comma-separated")
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--config", default="{}", help="more config keys, as JSON")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="demo-estimate-"))
    try:
        settings = load_settings({"STUDIO_ROOT": str(root), "STUDIO_DEMO": "1", "CAPTION_URL": "http://127.0.0.1:9"})
        ensure_demo_models(settings, caption=False)
        folder = Workspace(root).exports / "set"
        folder.mkdir(parents=True)
        rng = np.random.default_rng(0)
        for i in range(args.images):
            Image.fromarray(rng.integers(0, 255, (768, 768, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
            (folder / f"img{i}.txt").write_text(f"tok, picture {i}")
        (folder / "dataset.json").write_text(json.dumps({"name": "set", "trigger_word": "tok", "images": args.images}))
        recipe = get_recipe("zimage-turbo")
        config = {**recipe.defaults(), "name": "estimate", "trigger_word": "tok", "steps": args.steps,
                  "resolutions": [int(r) for r in args.resolutions.split(",")], **json.loads(args.config)}
        guess = recipe.estimate(recipe.config_from_dict(config), args.images, None, True, [(768, 768)] * args.images)
        worker = Worker(settings, poll_s=0.1)
        worker.store.create("train", name="estimate", recipe="zimage-turbo", config=config, dataset="set",
                            total=args.steps)
        start = time.perf_counter()
        job = worker.run_once()
        actual = time.perf_counter() - start
        print(json.dumps({"steps": args.steps, "resolutions": config["resolutions"], "status": job.status,
                          "estimate_s": guess.seconds, "actual_s": round(actual, 1),
                          "actual/estimate": round(actual / guess.seconds, 2)}))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
