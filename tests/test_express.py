"""The express lane: bad input is refused before anything starts, the chain moves through its stages,
survives a restart in the middle of each one, and a failed stage can be retried with nothing lost.

The caption service is the stand-in that speaks its HTTP contract (tests/test_datasets_autocaption.py);
training runs the real engine on the tiny demo model through a real worker."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import zipfile

import pytest

import app as datasets_app
from app.express_plan import Gpu, make_plan
from app.express_rules import ExpressInputError, check_trigger, sample_prompts
from studio.jobs import JobStore
from studio.settings import load_settings
from tests.test_datasets_autocaption import StandIn
from tests.test_datasets_hub_import import hub  # noqa: F401 - the stand-in hub, a fixture
from tests.test_datasets_support import image_bytes
from tests.test_datasets_url_import import web  # noqa: F401 - the stand-in web, a fixture


def _dead_owner() -> str:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return f"{proc.pid}:1"


@pytest.fixture
def stand_in():
    server = StandIn()
    yield server
    server.close()


@pytest.fixture
def studio(demo_root, stand_in):
    def make(**env):
        settings = load_settings({"STUDIO_ROOT": str(demo_root), "STUDIO_DEMO": "1", "CAPTION_URL": stand_in.url,
                                  **{k: str(v) for k, v in env.items()}})
        return settings, datasets_app.create_app(settings)

    return make


def _zip(count: int, size=(96, 80)) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(count):
            archive.writestr(f"photos/cat{i}.png", image_bytes(i, size=size))
        archive.writestr("notes/readme.md", b"not an image")
    return buffer.getvalue()


def _create(client, trigger="zxcat", kind="object") -> dict:
    response = client.post("/api/express", json={"trigger_word": trigger, "kind": kind})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _new_run(studio):
    """A studio, its client, and a new express run (waiting for its upload)."""
    settings, app = studio()
    client = app.test_client()
    return settings, app, client, _create(client)


def _upload_session(client, dataset_id: str, name: str, data: bytes) -> str:
    session = client.post(f"/api/datasets/{dataset_id}/uploads", json={"filename": name, "size": len(data)}).get_json()
    size = session["chunk_size"]
    for n in range(session["chunks"]):
        chunk = data[n * size:(n + 1) * size]
        assert client.put(f"/api/datasets/{dataset_id}/uploads/{session['id']}/chunks/{n}", data=chunk,
                          content_type="application/octet-stream").status_code == 200
    return session["id"]


def _drive(app, express_id: str, until, limit: int = 400):
    """Advance the chain (as the driver thread does) until `until(run)` holds."""
    client = app.test_client()
    for _ in range(limit):
        app.extensions["express_driver"].tick()
        run = client.get(f"/api/express/{express_id}").get_json()
        if until(run):
            return run
        time.sleep(0.05)
    raise AssertionError(f"the chain did not get there: {run['express']}")


def _run_worker(settings) -> None:
    from trainer.worker import Worker

    worker = Worker(settings, poll_s=0.1, unload_caption=False)
    job = worker.run_once()
    assert job is not None and job.status == "completed", job and (job.error or job.message)


# -- input checked before anything starts ------------------------------------------------------------
@pytest.mark.parametrize(("word", "says"), [
    ("", "Type a trigger word"), ("   ", "Type a trigger word"), ("my cat", "without spaces: try 'my_cat'"),
    ("cat", "common word"), ("Dogs", "common word"), ("photo", "common word"), ("ab", "3 to 40"),
    ("zx/cat", "letters A-Z"), ("中文猫", "no accents or other scripts"), (None, "Type a trigger word")])
def test_bad_trigger_words_are_refused_with_a_suggestion(studio, word, says):
    _, app = studio()
    client = app.test_client()
    response = client.post("/api/express", json={"trigger_word": word, "kind": "object"})
    assert response.status_code == 422 and says in response.get_json()["error"]
    assert client.get("/api/datasets").get_json()["datasets"] == []  # nothing was created


def test_a_good_trigger_word_and_kinds():
    assert check_trigger(" zxcat ") == "zxcat" and check_trigger("m1a_person") == "m1a_person"
    with pytest.raises(ExpressInputError):
        check_trigger("woman")


def test_unknown_kind_is_refused(studio):
    _, app = studio()
    response = app.test_client().post("/api/express", json={"trigger_word": "zxcat", "kind": "landscape"})
    assert response.status_code == 422 and "person, object, style, other" in response.get_json()["error"]


def test_no_gpu_or_a_small_one_is_refused_before_the_upload(studio, tmp_path, monkeypatch):
    from trainer import validation

    _, app = studio(STUDIO_DEMO=0)
    client = app.test_client()
    monkeypatch.setattr(validation, "_gpu_cache", {})
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    response = client.post("/api/express", json={"trigger_word": "zxcat", "kind": "object"})
    assert response.status_code == 422 and "No NVIDIA GPU" in response.get_json()["error"]
    fake = tmp_path / "nvidia-smi"  # what nvidia-smi prints on an 8 GB card
    fake.write_text("#!/bin/sh\ncase \"$1\" in *memory.free*) echo '7900';; *) echo 'NVIDIA RTX 2070, 8192';; esac\n")
    fake.chmod(0o755)
    monkeypatch.setattr(validation, "_gpu_cache", {})
    response = client.post("/api/express", json={"trigger_word": "zxcat", "kind": "object"})
    assert response.status_code == 422 and "smallest memory preset" in response.get_json()["error"]
    assert client.get("/api/datasets").get_json()["datasets"] == []


# -- the plan -----------------------------------------------------------------------------------------
def test_plan_derives_steps_resolutions_and_preset_from_the_data_and_the_gpu():
    big = [(1600, 1200)] * 12 + [(900, 800)] * 8
    plan = make_plan(name="cat", trigger="zxcat", kind="object", sizes=big, captions=["a cat on a sofa"] * 20,
                     gpu=Gpu("NVIDIA H100 80GB HBM3", 80, 79), demo=False)
    chosen = {c["setting"]: c for c in plan.choices}
    assert plan.config["steps"] == 2000 and "20 images x 100 steps" in chosen["steps"]["why"]
    assert plan.preset == "48gb" and plan.config["quantize_base"] == "none"
    assert plan.config["resolutions"] == [512, 768, 1024] and plan.config["sample_every"] == 500
    assert plan.config["sample_prompts"][0] == "[trigger], a cat on a sofa" and plan.estimate_device == "gpu"
    assert plan.warnings == []
    small = make_plan(name="cat", trigger="zxcat", kind="object", sizes=[(700, 600)] * 3, captions=[],
                      gpu=Gpu("NVIDIA RTX 4090", 24, 23), demo=False)
    assert small.preset == "24gb" and small.config["resolutions"] == [512] and small.config["steps"] == 500
    assert "Only 3 images" in small.warnings[0]
    many = make_plan(name="cat", trigger="zxcat", kind="style", sizes=[(1024, 1024)] * 612, captions=["x"],
                     gpu=Gpu("NVIDIA L4", 24, 16), demo=False)
    assert many.preset == "16gb" and many.config["steps"] == 4000 and "612 images" in many.warnings[0]
    # a style trains on mirror images too; a subject (an object, a person) keeps its left and right
    assert many.config["flip_horizontal"] is True and "flip_horizontal" not in plan.config
    assert "alpha_mask" not in plan.config
    # cut-out subjects (transparent backgrounds) train on their visible part, when most images are such
    cutouts = make_plan(name="cat", trigger="zxcat", kind="object", sizes=big, captions=["x"], transparent=15,
                        gpu=Gpu("NVIDIA H100 80GB HBM3", 80, 79), demo=False)
    assert cutouts.config["alpha_mask"] is True
    assert "15 of 20 images have transparency" in {c["setting"]: c for c in cutouts.choices}["alpha_mask"]["why"]
    few = make_plan(name="cat", trigger="zxcat", kind="object", sizes=big, captions=["x"], transparent=3,
                    gpu=Gpu("NVIDIA H100 80GB HBM3", 80, 79), demo=False)
    assert "alpha_mask" not in few.config and not few.warnings
    # images the gallery flags as soft are named before the run, with what to do about them
    soft = make_plan(name="cat", trigger="zxcat", kind="object", sizes=big, captions=["x"], soft=("a.jpg", "b.jpg"),
                     gpu=Gpu("NVIDIA H100 80GB HBM3", 80, 79), demo=False)
    assert soft.warnings == ["2 of 20 images look soft (out of focus, blurred or upscaled): a.jpg, b.jpg. A LoRA "
                             "learns the softness too; the dataset's Flagged filter shows them, to crop, replace or "
                             "remove before a next run."]
    # and so are those it flags as small, the smallest named
    small = make_plan(name="cat", trigger="zxcat", kind="object", sizes=big, captions=["x"],
                      small=(("b.jpg", 480, 640), ("a.jpg", 400, 300)), gpu=Gpu("NVIDIA H100 80GB HBM3", 80, 79),
                      demo=False)
    assert small.warnings == ["2 of 20 images are under 512 px on the short side (smallest: a.jpg, 400x300): never "
                              "upscaled, they bring less detail than the rest, and a LoRA learns that too. The "
                              "dataset's Flagged filter shows them, to replace or remove before a next run."]
    # and its near-duplicates, each with the earlier image it looks like
    similar = make_plan(name="cat", trigger="zxcat", kind="object", sizes=big, captions=["x"],
                        similar=(("b.jpg", "a.jpg"),), gpu=Gpu("NVIDIA H100 80GB HBM3", 80, 79), demo=False)
    assert similar.warnings == ["1 of 20 images look nearly the same as another (b.jpg like a.jpg): that look is "
                                "trained twice as often as the others. The dataset's Flagged filter shows them, to "
                                "keep the best of each before a next run."]
    with pytest.raises(ExpressInputError, match="only 9.0 GB free"):
        make_plan(name="cat", trigger="zxcat", kind="object", sizes=big, captions=[], gpu=Gpu("RTX", 24, 9),
                  demo=False)
    with pytest.raises(ExpressInputError, match="No usable images"):
        make_plan(name="cat", trigger="zxcat", kind="object", sizes=[], captions=[], gpu=None, demo=True)


def test_keeping_the_class_is_a_choice_with_its_reason_and_its_time():
    big = [(1600, 1200)] * 20
    gpu = Gpu("NVIDIA H100 80GB HBM3", 80, 79)
    plain = make_plan(name="me", trigger="zxme", kind="person", sizes=big, captions=["a person"], gpu=gpu, demo=False)
    kept = make_plan(name="me", trigger="zxme", kind="person", sizes=big, captions=["a person"], gpu=gpu, demo=False,
                     preserve=True)
    assert "preserve_class" not in plain.config and kept.config["preserve_class"] == "person"
    why = {c["setting"]: c["why"] for c in kept.choices}["preserve_class"]
    assert "keep other people as the base model draws them" in why and "2.4x the training time" in why
    assert kept.estimated_s > 2 * plain.estimated_s - 600  # the steps take 2.4 times as long; loading does not
    thing = make_plan(name="mug", trigger="zxmug", kind="object", sizes=big, captions=["x"], gpu=gpu, demo=False,
                      preserve=True)
    assert thing.config["preserve_class"] == "object"  # what the object captions call the subject


def test_keeping_the_class_is_refused_where_there_is_no_class_word(studio):
    _, app = studio()
    client = app.test_client()
    for body, says in (({"kind": "style", "preserve": True}, "works for a person or an object"),
                       ({"kind": "person", "preserve": "yes"}, "'preserve' must be true or false.")):
        response = client.post("/api/express", json={"trigger_word": "zxme", **body})
        assert response.status_code == 422 and says in response.get_json()["error"]
        assert response.get_json()["details"][0]["field"] == "preserve"
    assert client.get("/api/datasets").get_json()["datasets"] == []
    made = client.post("/api/express", json={"trigger_word": "zxme", "kind": "style", "preserve": False})
    assert made.status_code == 201


@pytest.mark.slow
def test_a_run_that_keeps_the_class_trains_with_it(studio):
    settings, app = studio()
    client = app.test_client()
    made = client.post("/api/express", json={"trigger_word": "zxme", "kind": "person", "preserve": True}).get_json()
    express_id, dataset_id = made["express"]["id"], made["express"]["dataset"]
    session = _upload_session(client, dataset_id, "me.zip", _zip(5))
    assert client.post(f"/api/express/{express_id}/start", json={"sessions": [session]}).status_code == 202
    run = _drive(app, express_id, lambda r: r["express"]["phase"] == "train")
    assert run["plan"]["config"]["preserve_class"] == "person"
    job = JobStore(settings.root / "studio.db").get(run["stages"][3]["job_id"])
    assert job.config["preserve_class"] == "person"


def test_sample_prompts_use_the_captions_and_a_new_scene_per_kind():
    prompts = sample_prompts("person", ["a person in a red coat", "a person sitting on stairs in a park at noon"])
    assert prompts[0] == "[trigger], a person in a red coat" and "stairs" in prompts[1]
    assert "beach" in prompts[2] and all(p.startswith("[trigger]") for p in prompts)
    assert sample_prompts("style", [])[-1].endswith("[trigger] style")


# -- the whole chain ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_zip_to_lora_with_base_and_lora_samples(studio, monkeypatch):
    from trainer import validation

    monkeypatch.setattr(validation, "free_bytes", lambda root: 1000)  # a nearly full volume: the plan warns
    settings, app, client, made = _new_run(studio)
    express_id, dataset_id = made["express"]["id"], made["express"]["dataset"]
    assert made["express"]["phase"] == "upload" and made["stages"][0]["status"] == "waiting"
    session = _upload_session(client, dataset_id, "cats.zip", _zip(6))
    assert client.post(f"/api/express/{express_id}/start", json={"sessions": [session]}).status_code == 202
    JobStore(settings.root / "studio.db").worker_beat(os.getpid(), "idle")  # a worker is there to train it
    run = _drive(app, express_id, lambda r: r["express"]["phase"] == "train")
    assert [s["status"] for s in run["stages"][:3]] == ["completed"] * 3
    dataset = run["dataset"]
    assert dataset["images"] == 6 and dataset["captioned"] == 6 and dataset["trigger_word"] == "zxcat"
    plan = run["plan"]
    assert plan["config"]["trigger_word"] == "zxcat" and plan["images"] == 6 and plan["estimate_device"] == "demo"
    assert any(w.startswith("This job writes up to about") for w in plan["warnings"]), plan["warnings"]
    train = run["stages"][3]
    assert train["edit_settings"] == f"/new?from={train['job_id']}" and train["dataset_version"]
    # queued with nothing ahead of it: it starts as soon as the worker is there, and says how long it takes
    assert train["status"] == "queued" and train["schedule"]["starts_in_s"] == 0 and train["schedule"]["done_in_s"] > 0
    _run_worker(settings)
    run = _drive(app, express_id, lambda r: r["express"]["status"] != "running")
    assert run["express"]["status"] == "completed", run["express"]
    proof = run["proof"]
    assert proof["lora"].endswith(".safetensors") and proof["grid"] and proof["readme"]
    assert proof["workflow"].endswith("/lora/comfyui_workflow.json")
    assert proof["library_path"].endswith(proof["lora_file"])
    # how much it changes pictures without its trigger word, and the class word to train it again with if it leaks
    assert proof["keep_class"] == "object" and "leak" in proof
    if proof["leak"] is not None:
        assert proof["leak"]["leaks"] == (proof["leak"]["share"] >= 0.6)
    last = run["samples"][-1]["pairs"]
    assert all(p["base"] and p["lora"] for p in last) and any(p["lora_no_trigger"] for p in last)
    # every file comes from this service's origin (behind RunPod's proxy each port is a host of its own)
    here = f"/api/express/{express_id}/files/"
    assert all(url.startswith(here) for url in (proof["lora"], proof["grid"], proof["readme"], last[0]["base"]))
    lora = client.get(proof["lora"])
    assert lora.status_code == 200 and lora.data[:8] and "attachment" in lora.headers["Content-Disposition"]
    image = client.get(last[0]["lora"])
    assert image.status_code == 200 and image.mimetype == "image/png" and image.data[:4] == b"\x89PNG"
    thumb = client.get(last[0]["lora"] + "?thumb=1")  # what the page shows; the full file is a click away
    assert thumb.status_code == 200 and thumb.mimetype == "image/webp"
    # watch it learn: each prompt's pictures in turn, from this origin too
    assert run["timelapses"] and run["timelapses"][0]["url"] == f"/api/express/{express_id}/timelapse/0"
    animation = client.get(run["timelapses"][0]["url"])
    assert animation.status_code == 200 and animation.mimetype == "image/webp"
    assert client.get(f"/api/express/{express_id}/timelapse/99").status_code == 404
    assert client.get(here + "lora/nothing.png").status_code == 404
    assert client.get(here + "../../studio.db").status_code in (400, 404)
    assert client.get(here + "..%2F..%2Fstudio.db").status_code in (400, 404)
    # renamed in the LoRA library: the page offers the file by that name, which its README and workflow load
    store = JobStore(settings.root / "studio.db")
    train = store.get(run["stages"][3]["job_id"])
    library_dir = settings.root / "trainer" / "loras"
    (library_dir / proof["lora_file"]).rename(library_dir / "my-mug.safetensors")
    store.update(train.id, result={**train.result, "library_file": "my-mug.safetensors"})
    renamed = client.get(f"/api/express/{express_id}").get_json()["proof"]
    assert renamed["lora_file"] == "my-mug.safetensors"
    assert 'filename=my-mug.safetensors' in client.get(renamed["lora"]).headers["Content-Disposition"]
    assert "my-mug.safetensors" in client.get(renamed["workflow"]).get_data(as_text=True)
    # its job deleted (with its LoRA, from the library's card): the page says so instead of "skipped"
    store.delete(train.id)
    gone = client.get(f"/api/express/{express_id}").get_json()
    assert gone["stages"][3]["status"] == "deleted" and "Recently deleted" in gone["stages"][3]["message"]


def test_files_of_a_run_that_has_not_trained_yet_are_404(studio):
    _, _, client, made = _new_run(studio)
    missing = client.get(f"/api/express/{made['express']['id']}/files/lora/x.safetensors")
    assert missing.status_code == 404 and "not started training" in missing.get_json()["error"]
    assert client.get("/api/express/nope/files/lora/x.safetensors").status_code == 404


# -- a restart in the middle of each stage ------------------------------------------------------------
def _orphan_stage(settings, express_id: str, kind: str, dataset: str) -> str:
    """A stage job left running by a process that died (what a pod restart leaves behind)."""
    store = JobStore(settings.root / "studio.db")
    job, _ = store.create(kind, dataset=dataset, parent_id=express_id, total=3)
    store.start(job.id, _dead_owner())
    store.progress(express_id, {"phase": kind})
    return job.id


@pytest.mark.parametrize("stage", ["import", "caption", "export"])
def test_a_restart_in_the_middle_of_a_dataset_stage_runs_it_again(studio, stage):
    settings, app, client, made = _new_run(studio)
    express_id, dataset_id = made["express"]["id"], made["express"]["dataset"]
    session = _upload_session(client, dataset_id, "cats.zip", _zip(4))
    store = JobStore(settings.root / "studio.db")
    store.update(express_id, config={**made["express"]["config"], "sessions": [session]})
    if stage != "import":  # the earlier stages finished before the restart
        import_job = client.post(f"/api/datasets/{dataset_id}/imports", json={"sessions": [session]}).get_json()
        _wait_for_job(store, import_job["id"])
    if stage == "export":
        client.post(f"/api/datasets/{dataset_id}/caption", json={"mode": "skip"})
        _wait_for_job(store, store.latest("caption", dataset_id).id)
    if stage == "import":  # the killed import had moved one image in without recording it
        (settings.root / "datasets" / dataset_id / "cat0.png").write_bytes(image_bytes(0, size=(96, 80)))
    orphan = _orphan_stage(settings, express_id, stage, dataset_id)
    restarted = datasets_app.create_app(settings)  # the pod starts again
    assert store.get(orphan).status == "interrupted"
    run = _drive(restarted, express_id, lambda r: r["express"]["phase"] == "train")
    stage_row = next(s for s in run["stages"] if s["stage"] == stage)
    assert stage_row["status"] == "completed" and stage_row["job_id"] != orphan
    assert run["dataset"]["images"] == 4  # an import run twice adds nothing twice (a placed image included)
    names = [i["name"] for i in restarted.test_client().get(f"/api/datasets/{dataset_id}/images").get_json()["images"]]
    assert sorted(names) == [f"cat{i}.png" for i in range(4)]
    assert run["express"]["relaunches"] == 1


def _wait_for_job(store, job_id: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while store.get(job_id).status in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.get(job_id).status == "completed", store.get(job_id).error


def _run_at_training(studio):
    """A run of three small pictures, driven to its train stage: (settings, app, client, express id, run)."""
    settings, app, client, made = _new_run(studio)
    express_id, dataset_id = made["express"]["id"], made["express"]["dataset"]
    client.post(f"/api/datasets/{dataset_id}/upload?wait=20",
                data={"files": [(io.BytesIO(image_bytes(i, size=(96, 80))), f"c{i}.png") for i in range(3)]},
                content_type="multipart/form-data")
    client.post(f"/api/express/{express_id}/start", json={})
    return settings, app, client, express_id, _drive(app, express_id, lambda r: r["express"]["phase"] == "train")


@pytest.mark.slow
def test_a_restart_in_the_middle_of_training_continues_it(studio):
    settings, app, client, express_id, run = _run_at_training(studio)
    store = JobStore(settings.root / "studio.db")
    train_id = run["stages"][3]["job_id"]
    store.claim("train", _dead_owner())  # a worker took it and died
    from trainer.recovery import reconcile

    reconcile(store, settings.root / "trainer" / "jobs")
    assert store.get(train_id).status == "queued"
    restarted = datasets_app.create_app(settings)
    assert restarted.test_client().get(f"/api/express/{express_id}").get_json()["express"]["status"] == "running"
    _run_worker(settings)
    assert _drive(restarted, express_id, lambda r: r["express"]["status"] != "running")["express"]["status"] == \
        "completed"


# -- failures: a clear message, nothing lost, the stage can be retried --------------------------------
def test_an_all_rejected_zip_fails_clearly_and_a_retry_goes_on(studio):
    settings, app, client, made = _new_run(studio)
    express_id, dataset_id = made["express"]["id"], made["express"]["dataset"]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("broken.png", b"not really a png")
        archive.writestr("notes.txt", b"hello")
    session = _upload_session(client, dataset_id, "bad.zip", buffer.getvalue())
    client.post(f"/api/express/{express_id}/start", json={"sessions": [session]})
    run = _drive(app, express_id, lambda r: r["express"]["status"] != "running")
    assert run["express"]["status"] == "failed" and "No usable images" in run["express"]["error"]
    assert "broken.png: " in run["express"]["error"], run["express"]["error"]  # what was left out, and why
    assert client.get(f"/api/datasets/{dataset_id}").status_code == 200  # the dataset is kept
    client.post(f"/api/datasets/{dataset_id}/upload?wait=20",
                data={"files": [(io.BytesIO(image_bytes(7)), "good.png")]}, content_type="multipart/form-data")
    assert client.post(f"/api/express/{express_id}/retry").status_code == 200
    run = _drive(app, express_id, lambda r: r["express"]["phase"] == "train")
    assert run["dataset"]["images"] == 1 and "Only 1 image" in run["plan"]["warnings"][0]
    # the gallery flags the 64x48 picture as small, and the plan says so before the run
    assert "1 of 1 images is under 512 px on the short side (good.png, 64x48)" in run["plan"]["warnings"][1]


def test_an_empty_zip_fails_clearly(studio):
    _, app = studio()
    client = app.test_client()
    made = _create(client)
    buffer = io.BytesIO()
    zipfile.ZipFile(buffer, "w").close()
    session = _upload_session(client, made["express"]["dataset"], "empty.zip", buffer.getvalue())
    client.post(f"/api/express/{made['express']['id']}/start", json={"sessions": [session]})
    run = _drive(app, made["express"]["id"], lambda r: r["express"]["status"] != "running")
    assert run["express"]["status"] == "failed"
    assert "no images" in run["express"]["error"].lower() or "No usable images" in run["express"]["error"]


def test_a_dead_caption_service_fails_the_stage_and_retry_continues(studio, stand_in):
    settings, app, client, made = _new_run(studio)
    express_id, dataset_id = made["express"]["id"], made["express"]["dataset"]
    client.post(f"/api/datasets/{dataset_id}/upload?wait=20",
                data={"files": [(io.BytesIO(image_bytes(i)), f"c{i}.png") for i in range(2)]},
                content_type="multipart/form-data")
    stand_in.status = "error"
    client.post(f"/api/express/{express_id}/start", json={})
    run = _drive(app, express_id, lambda r: r["express"]["status"] != "running")
    assert run["express"]["status"] == "failed" and "Captioning cannot start" in run["express"]["error"]
    assert run["dataset"]["images"] == 2
    stand_in.status = "ready"
    client.post(f"/api/express/{express_id}/retry")
    run = _drive(app, express_id, lambda r: r["express"]["phase"] == "train")
    assert run["dataset"]["captioned"] == 2


def test_a_stage_waits_for_its_model_download_then_goes_on(studio, stand_in):
    """Right after the pod starts the models are still downloading: the chain waits, it does not fail."""
    from studio.atomic import atomic_write_json
    from studio.workspace import Workspace

    settings, app, client, made = _new_run(studio)
    express_id, dataset_id = made["express"]["id"], made["express"]["dataset"]
    status_file = Workspace(settings.root).model_status_file

    def downloads(caption: str, percent: float = 40.0) -> None:
        atomic_write_json(status_file, {"state": "downloading", "models": [
            {"key": "caption", "name": "Qwen2.5-VL-7B-Instruct-GGUF", "state": caption, "percent": percent,
             "eta_s": 120}]})

    downloads("downloading")
    stand_in.status = "error"  # the service cannot load a model that is not there yet
    client.post(f"/api/datasets/{dataset_id}/upload?wait=20",
                data={"files": [(io.BytesIO(image_bytes(i)), f"c{i}.png") for i in range(2)]},
                content_type="multipart/form-data")
    client.post(f"/api/express/{express_id}/start", json={})
    waits = "Waiting for the caption model: downloading, 40% (ETA 2 min). Captioning starts by itself when it is ready."
    run = _drive(app, express_id, lambda r: {s["stage"]: s.get("message") for s in r["stages"]}["caption"] == waits)
    time.sleep(1.0)
    run = _drive(app, express_id, lambda r: True)
    assert run["express"]["status"] == "running" and run["express"]["phase"] == "caption"
    assert run["dataset"]["captioned"] == 0
    downloads("ready", 100.0)
    stand_in.status = "ready"
    run = _drive(app, express_id, lambda r: r["express"]["phase"] == "train")
    assert run["dataset"]["captioned"] == 2


def test_deleting_the_dataset_stops_its_run(studio):
    _, app, client, made = _new_run(studio)
    express_id, dataset_id = made["express"]["id"], made["express"]["dataset"]
    client.post(f"/api/datasets/{dataset_id}/upload?wait=20",
                data={"files": [(io.BytesIO(image_bytes(1)), "c1.png")]}, content_type="multipart/form-data")
    client.post(f"/api/express/{express_id}/start", json={})
    assert client.delete(f"/api/datasets/{dataset_id}").status_code == 200
    run = _drive(app, express_id, lambda r: r["express"]["status"] != "running")
    assert run["express"]["status"] == "stopped" and "dataset was deleted" in run["express"]["message"]
    assert run["dataset"] is None


def test_runs_whose_files_never_came_are_closed_and_their_empty_datasets_removed(studio):
    from app.express_abandoned import ABANDONED_S, close_abandoned

    _, app, client, left = _new_run(studio)  # its tab closed before the upload
    uploading = _create(client, trigger="zxdog")  # its files still arrive, slowly
    filled = _create(client, trigger="zxfox")  # its images were put in through the dataset manager instead
    client.post(f"/api/datasets/{filled['express']['dataset']}/upload?wait=20",
                data={"files": [(io.BytesIO(image_bytes(1)), "c1.png")]}, content_type="multipart/form-data")
    store = JobStore(app.config["STUDIO_SETTINGS"].root / "studio.db")
    assert store.count(("running",), kind="express", work=True) == 0  # waiting for files is no work
    later = time.time() + ABANDONED_S + 60
    with app.app_context():
        assert close_abandoned(later - 120) == []  # not yet
        session = _upload_session(client, uploading["express"]["dataset"], "cats.zip", _zip(2))
        chunks = app.config["STUDIO_SETTINGS"].root / ".uploads" / f"session-{session}" / "chunks"
        os.utime(chunks, (later - 600, later - 600))  # a chunk ten minutes before "later"
        closed = close_abandoned(later)
    assert sorted(closed) == sorted([left["express"]["id"], filled["express"]["id"]])
    run = client.get(f"/api/express/{left['express']['id']}").get_json()
    assert run["express"]["status"] == "stopped" and not run["express"]["resumable"]  # no Retry: start anew
    assert run["express"]["message"] == ("Closed: no files arrived for 6 hours after the run began; its empty dataset "
                                         "zxcat went to Recently deleted. Start a new run on the Express page to go "
                                         "on.")
    deleted = client.get("/api/deleted-datasets").get_json()
    assert run["dataset"] is None and [(d["name"], d["images"]) for d in deleted["datasets"]] == [("zxcat", 0)]
    kept = client.get(f"/api/express/{filled['express']['id']}").get_json()
    assert kept["express"]["status"] == "stopped" and kept["dataset"]["images"] == 1  # the images stay
    assert client.get(f"/api/express/{uploading['express']['id']}").get_json()["express"]["status"] == "running"
    # a new run closes them too (here none is left), and its name is free again
    assert _create(client)["express"]["config"]["lora_name"] == "zxcat"


def test_start_needs_images_and_happens_once(studio):
    _, app = studio()
    client = app.test_client()
    made = _create(client)
    express_id = made["express"]["id"]
    assert client.post(f"/api/express/{express_id}/start", json={}).status_code == 422
    assert client.post(f"/api/express/{express_id}/start", json={"sessions": "x"}).status_code == 422
    assert client.get("/api/express/nope").status_code == 404
    assert client.post(f"/api/express/{express_id}/retry").status_code == 409


def test_a_link_instead_of_an_upload_goes_through_to_training(studio, web):  # noqa: F811
    settings, app = studio(ALLOW_PRIVATE_URLS=1)
    client = app.test_client()
    made = _create(client)
    express_id = made["express"]["id"]
    bad = client.post(f"/api/express/{express_id}/start", json={"url": "ftp://example.com/set.zip"})
    assert bad.status_code == 422 and "http:// or https://" in bad.get_json()["error"]
    both = client.post(f"/api/express/{express_id}/start", json={"url": f"{web}/set.zip", "sessions": ["x"]})
    assert both.status_code == 422 and "not both" in both.get_json()["error"]
    assert client.post(f"/api/express/{express_id}/start", json={"url": f"{web}/set.zip"}).status_code == 202
    run = _drive(app, express_id, lambda r: r["express"]["phase"] == "train")
    imported = next(s for s in run["stages"] if s["stage"] == "import")
    assert imported["status"] == "completed" and imported["result"]["source"]["file"] == "set.zip"
    assert run["dataset"]["images"] == 2


def test_a_clip_link_takes_the_frames_asked_for(studio, web):  # noqa: F811
    settings, app = studio(ALLOW_PRIVATE_URLS=1)
    client = app.test_client()
    express_id = _create(client)["express"]["id"]
    refused = client.post(f"/api/express/{express_id}/start", json={"url": f"{web}/walk.mp4", "max_frames": -1})
    assert refused.status_code == 422 and "'max_frames'" in refused.get_json()["error"]
    started = client.post(f"/api/express/{express_id}/start", json={"url": f"{web}/walk.mp4", "frame_seconds": 1})
    assert started.status_code == 202
    run = _drive(app, express_id, lambda r: r["express"]["phase"] != "import" or r["express"]["status"] != "running")
    imported = next(s for s in run["stages"] if s["stage"] == "import")
    assert imported["status"] == "completed", imported
    assert imported["result"]["videos"][0]["frames"] == 4 and run["dataset"]["images"] == 4  # 2 at every 2 s


def test_a_hugging_face_dataset_link_goes_through_to_training(studio, hub):  # noqa: F811
    settings, app = studio(HF_ENDPOINT=hub.url)
    client = app.test_client()
    express_id = _create(client)["express"]["id"]
    link = "https://huggingface.co/datasets/me/portraits"  # five images: three spread over them are taken
    alone = client.post(f"/api/express/{express_id}/start", json={"limit": 3})
    assert alone.status_code == 422 and "give a 'url' with it" in alone.get_json()["error"]
    refused = client.post(f"/api/express/{express_id}/start", json={"url": link, "spread": True})
    assert refused.status_code == 422 and "give 'limit' with it" in refused.get_json()["error"]
    started = client.post(f"/api/express/{express_id}/start", json={"url": link, "limit": 3, "spread": True})
    assert started.status_code == 202
    run = _drive(app, express_id, lambda r: r["express"]["phase"] == "train")
    imported = next(s for s in run["stages"] if s["stage"] == "import")
    assert imported["status"] == "completed" and imported["result"]["source"]["dataset"] == "me/portraits"
    assert imported["result"]["limit"]["reached"] and run["dataset"]["images"] == 3
    assert imported["result"]["limit"]["spread"]  # three spread over the five


def test_a_link_that_is_no_zip_fails_the_import_and_another_link_goes_on(studio, web):  # noqa: F811
    settings, app = studio(ALLOW_PRIVATE_URLS=1)
    client = app.test_client()
    made = _create(client)
    express_id = made["express"]["id"]
    client.post(f"/api/express/{express_id}/start", json={"url": f"{web}/share"})
    run = _drive(app, express_id, lambda r: r["express"]["status"] != "running")
    assert run["express"]["status"] == "failed" and "use a direct download link" in run["express"]["error"]
    assert client.post(f"/api/express/{express_id}/start", json={"url": f"{web}/set.zip"}).status_code == 202
    run = _drive(app, express_id, lambda r: r["express"]["phase"] == "train")
    assert run["dataset"]["images"] == 2


@pytest.mark.slow
def test_a_run_stopped_while_it_trains_finishes_after_retry(studio):
    settings, app, client, express_id, _ = _run_at_training(studio)
    assert client.post(f"/api/express/{express_id}/stop").status_code == 200
    stopped = _drive(app, express_id, lambda r: r["express"]["status"] != "running")
    assert stopped["express"]["status"] == "stopped" and stopped["stages"][3]["status"] == "stopped"
    assert client.post(f"/api/express/{express_id}/retry").status_code == 200
    _run_worker(settings)
    done = _drive(app, express_id, lambda r: r["express"]["status"] != "running")
    assert done["express"]["status"] == "completed" and done["stages"][3]["status"] == "completed"


def test_each_run_exports_to_its_own_trainer_dataset(studio):
    """Two runs of one trigger word, and an export of that name the dataset manager made by hand: none shares a
    trainer dataset, so Train further of the first never trains on the second's images."""
    settings, app = studio()
    client = app.test_client()
    (settings.root / "trainer" / "datasets" / "zxmug").mkdir(parents=True)  # an export made by hand
    names = [_create(client, trigger="zxmug")["express"]["config"]["export_name"] for _ in range(2)]
    assert names == ["zxmug-2", "zxmug-3"]
