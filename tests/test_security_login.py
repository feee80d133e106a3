"""One limiter for every password try (the login form and Bearer), shared by every service."""

from __future__ import annotations

import base64
import multiprocessing
from pathlib import Path

import app as datasets_pkg
import caption_service
import trainer
from studio.login_limiter import MAX_FAILURES, LoginLimiter

BEARER = {"Authorization": "Bearer pw"}


def _assert_429(response):
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0
    assert "Too many wrong passwords" in response.get_json()["error"]


def test_bearer_guessing_is_limited(make_settings):
    client = datasets_pkg.create_app(make_settings(STUDIO_PASSWORD="pw")).test_client()
    codes = [client.get("/api/datasets", headers={"Authorization": f"Bearer guess{i}"}).status_code
             for i in range(40)]
    assert codes[:MAX_FAILURES] == [401] * MAX_FAILURES and set(codes[MAX_FAILURES:]) == {429}
    _assert_429(client.get("/api/datasets", headers={"Authorization": "Bearer guess"}))
    # while blocked even the right password is refused, so guessing on tells nothing
    _assert_429(client.get("/api/datasets", headers=BEARER))
    # another address is not blocked
    assert client.get("/api/datasets", headers=BEARER, environ_base={"REMOTE_ADDR": "10.0.0.9"}).status_code == 200


def test_form_guessing_is_limited_with_page_or_json(make_settings):
    client = trainer.create_app(make_settings(STUDIO_PASSWORD="pw")).test_client()
    codes = [client.post("/login", data={"password": f"guess{i}"}).status_code for i in range(MAX_FAILURES + 3)]
    assert codes[:MAX_FAILURES] == [401] * MAX_FAILURES and set(codes[MAX_FAILURES:]) == {429}
    _assert_429(client.post("/login", data={"password": "pw"}, headers={"Accept": "application/json"}))
    page = client.post("/login", data={"password": "pw"}, headers={"Accept": "text/html,*/*;q=0.8"})
    assert page.status_code == 429 and int(page.headers["Retry-After"]) > 0
    assert "Too many wrong passwords" in page.get_data(as_text=True)


def test_one_budget_for_every_way_and_every_service(make_settings):
    """The services are separate processes sharing a workspace: failures anywhere count everywhere."""
    settings = make_settings(STUDIO_PASSWORD="pw")
    datasets = datasets_pkg.create_app(settings).test_client()
    trainer_client = trainer.create_app(settings).test_client()
    caption = caption_service.create_app(settings).test_client()
    for i in range(3):
        assert datasets.get("/api/datasets", headers={"Authorization": f"Bearer no{i}"}).status_code == 401
    for i in range(2):
        assert trainer_client.post("/login", data={"password": f"no{i}"}).status_code == 401
    _assert_429(caption.post("/caption", json={}, headers={"Authorization": "Bearer no"}))
    _assert_429(trainer_client.post("/login", data={"password": "pw"}, headers={"Accept": "application/json"}))


def test_forwarded_for_headers_do_not_reset_the_count(make_settings):
    client = datasets_pkg.create_app(make_settings(STUDIO_PASSWORD="pw")).test_client()
    for i in range(MAX_FAILURES + 2):
        spoofed = {"Authorization": "Bearer no", "X-Forwarded-For": f"203.0.113.{i}",
                   "CF-Connecting-IP": f"198.51.100.{i}"}
        response = client.get("/api/datasets", headers=spoofed)
    _assert_429(response)


def test_basic_auth_is_no_way_in(make_settings):
    """Basic is not accepted: even the right password in it is 401, so it cannot be used to guess."""
    client = datasets_pkg.create_app(make_settings(STUDIO_PASSWORD="pw")).test_client()
    basic = {"Authorization": "Basic " + base64.b64encode(b"user:pw").decode()}
    for _ in range(MAX_FAILURES + 2):
        assert client.get("/api/datasets", headers=basic).status_code == 401
    assert client.get("/api/datasets", headers=BEARER).status_code == 200


def test_limiter_store_is_shared_and_survives_a_broken_file(tmp_path):
    first, second = LoginLimiter(tmp_path / "f.db", max_failures=2), LoginLimiter(tmp_path / "f.db", max_failures=2)
    first.fail("1.2.3.4")
    second.fail("1.2.3.4")
    assert first.retry_after("1.2.3.4") > 0 and second.retry_after("1.2.3.4") > 0
    assert first.retry_after("5.6.7.8") == 0
    second.reset("1.2.3.4")
    assert first.retry_after("1.2.3.4") == 0
    broken = LoginLimiter(tmp_path, max_failures=2)  # a folder, not a database: counts in memory instead
    broken.fail("a")
    broken.fail("a")
    assert broken.retry_after("a") > 0


def _guess_in_a_process(path: str, start, results) -> None:
    limiter = LoginLimiter(Path(path), max_failures=MAX_FAILURES)
    start.wait()
    results.put([limiter.fail("6.6.6.6") for _ in range(4)])


def test_wrong_passwords_sent_at_once_from_several_processes_get_no_extra_tries(tmp_path):
    """The check and the count are one transaction: 24 wrong passwords fired together from six processes (the three
    services and their gunicorn workers share the file) get exactly MAX_FAILURES 401s, not a few more."""
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    workers = [context.Process(target=_guess_in_a_process, args=(str(tmp_path / "f.db"), start, results))
               for _ in range(6)]
    for worker in workers:
        worker.start()
    start.set()
    waits = [wait for _ in workers for wait in results.get(timeout=60)]
    for worker in workers:
        worker.join(timeout=30)
    assert sum(1 for wait in waits if wait == 0) == MAX_FAILURES
    assert all(wait > 0 for wait in waits if wait) and len(waits) == 24


def test_the_right_password_is_not_counted_and_is_refused_while_locked(make_settings):
    client = datasets_pkg.create_app(make_settings(STUDIO_PASSWORD="pw")).test_client()
    for _ in range(MAX_FAILURES * 2):
        assert client.get("/api/datasets", headers=BEARER).status_code == 200
    codes = [client.get("/api/datasets", headers={"Authorization": "Bearer no"}).status_code
             for _ in range(MAX_FAILURES)]
    assert codes == [401] * MAX_FAILURES
    _assert_429(client.get("/api/datasets", headers=BEARER))


def _login(client, password: str):
    return client.post("/login", data={"password": password}, headers={"Accept": "application/json"})


def _logout(client) -> None:
    assert client.post("/logout", headers={"Origin": "http://localhost"}).status_code == 302


def test_a_browser_that_logged_in_before_is_not_locked_out_by_a_stranger(make_settings):
    """Behind one proxy every visitor has the same address: the device cookie a login sets gives that
    browser its own budget, so someone guessing locks out only the browsers that never logged in."""
    from studio.auth import DEVICE_COOKIE

    settings = make_settings(STUDIO_PASSWORD="pw")
    owner = datasets_pkg.create_app(settings).test_client()
    first = _login(owner, "pw")
    assert first.status_code == 302
    device = owner.get_cookie(DEVICE_COOKIE)
    assert device is not None and device.http_only and device.max_age > 300 * 24 * 3600
    _logout(owner)  # the session ends; the device cookie stays
    assert owner.get("/api/datasets").status_code == 401

    stranger = trainer.create_app(settings).test_client()  # same address, another service
    for i in range(MAX_FAILURES):
        assert _login(stranger, f"guess{i}").status_code == 401
    _assert_429(_login(stranger, "pw"))
    _assert_429(stranger.get("/api/datasets", headers=BEARER))

    assert _login(owner, "pw").status_code == 302  # the owner's browser still gets in
    assert owner.get("/api/datasets").status_code == 200
    assert owner.get_cookie(DEVICE_COOKIE).value == device.value  # the same device, not a new one

    # the device's own budget still limits guessing from it
    _logout(owner)
    for i in range(MAX_FAILURES):
        assert _login(owner, f"wrong{i}").status_code == 401
    _assert_429(_login(owner, "pw"))
    assert "from this browser" in _login(owner, "pw").get_json()["error"]
    assert "from this address" in _login(stranger, "pw").get_json()["error"]


def test_a_forged_or_outdated_device_cookie_counts_as_a_stranger(make_settings):
    from studio.auth import DEVICE_COOKIE

    settings = make_settings(STUDIO_PASSWORD="pw")
    owner = datasets_pkg.create_app(settings).test_client()
    assert _login(owner, "pw").status_code == 302
    genuine = owner.get_cookie(DEVICE_COOKIE).value

    stranger = datasets_pkg.create_app(settings).test_client()
    for i in range(MAX_FAILURES):
        assert _login(stranger, f"guess{i}").status_code == 401
    forged = datasets_pkg.create_app(settings).test_client()
    forged.set_cookie(DEVICE_COOKIE, genuine[:-3] + ("AAA" if not genuine.endswith("AAA") else "BBB"))
    _assert_429(_login(forged, "pw"))

    # after the password changes, a cookie from the old one is no device of this studio any more
    changed = datasets_pkg.create_app(make_settings(STUDIO_PASSWORD="new-pw")).test_client()
    changed.set_cookie(DEVICE_COOKIE, genuine)
    _assert_429(_login(changed, "new-pw"))  # the same workspace: the stranger's count applies

    same = datasets_pkg.create_app(settings).test_client()  # the genuine cookie, the same password
    same.set_cookie(DEVICE_COOKIE, genuine)
    assert _login(same, "pw").status_code == 302
