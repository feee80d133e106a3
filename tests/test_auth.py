"""Auth on every route of every service: the test walks each app's url_map, so no route can skip it."""

import re

import pytest

import app as datasets_pkg
import caption_service
import trainer
from studio.auth import LoginLimiter, password_matches

FACTORIES = {"datasets": datasets_pkg.create_app, "caption": caption_service.create_app, "trainer": trainer.create_app}
PUBLIC = {"health", "favicon", "auth.login", "auth.logout"}  # the favicon: the same for everyone, no data


def routes_of(app):
    """(endpoint, method, url) for every protected route of `app`, with placeholder arguments."""
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC:
            continue
        numbers = set(re.findall(r"<int:(\w+)>", rule.rule))
        args = {name: "1" if name in numbers else "x1" for name in rule.arguments}
        if "filename" in rule.arguments:
            args["filename"] = "studio.css"
        with app.test_request_context():
            from flask import url_for

            url = url_for(rule.endpoint, **args)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule.endpoint, method, url


@pytest.fixture(params=sorted(FACTORIES))
def locked_app(request, make_settings):
    return FACTORIES[request.param](make_settings(STUDIO_PASSWORD="s3cret"))


def test_every_route_needs_the_password(locked_app):
    client = locked_app.test_client()
    routes = list(routes_of(locked_app))
    assert routes, "no routes found"
    for endpoint, method, url in routes:
        api = client.open(url, method=method, headers={"Accept": "application/json"})
        assert api.status_code == 401, f"{method} {url} ({endpoint}) answered {api.status_code} without auth"
        assert api.get_json()["error"]
        if method == "GET":
            page = client.open(url, method="GET", headers={"Accept": "text/html"})
            if url.startswith("/api/"):
                assert page.status_code == 401
            else:
                assert page.status_code == 302 and "/login" in page.headers["Location"], f"{url} not redirected"


def test_curl_gets_a_json_401_from_the_caption_service_and_a_browser_the_login(make_settings):
    client = caption_service.create_app(make_settings(STUDIO_PASSWORD="s3cret")).test_client()
    curl = client.get("/unload", headers={"Accept": "*/*"})
    assert curl.status_code == 401 and "Bearer" in curl.get_json()["error"]
    browser = client.get("/unload", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert browser.status_code == 302 and "/login" in browser.headers["Location"]
    # the dataset manager's pages still send curl to the login form, as before
    pages = datasets_pkg.create_app(make_settings(STUDIO_PASSWORD="s3cret")).test_client()
    assert pages.get("/", headers={"Accept": "*/*"}).status_code == 302


def test_health_is_public(locked_app):
    assert locked_app.test_client().get("/health").status_code == 200


def test_favicon_is_public(locked_app):
    response = locked_app.test_client().get("/favicon.ico")
    assert response.status_code == 200 and response.mimetype == "image/vnd.microsoft.icon"


def test_bearer_and_wrong_bearer(locked_app):
    client = locked_app.test_client()
    assert client.get("/health", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    wrong = client.get("/_studio/static/studio.css", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    right = client.get("/_studio/static/studio.css", headers={"Authorization": "Bearer s3cret"})
    assert right.status_code == 200


def test_login_sets_cookie_and_logout_clears_it(make_settings):
    app = FACTORIES["trainer"](make_settings(STUDIO_PASSWORD="s3cret"))
    client = app.test_client()
    assert client.get("/", headers={"Accept": "text/html"}).status_code == 302
    assert client.post("/login", data={"password": "bad"}).status_code == 401
    ok = client.post("/login", data={"password": "s3cret", "next": "/"})
    assert ok.status_code == 302 and ok.headers["Location"] == "/"
    page = client.get("/", headers={"Accept": "text/html"})
    assert page.status_code == 200
    # the pages log out with a POST form, not a link
    assert 'method="post" action="/logout"' in page.get_data(as_text=True)
    # GET /logout (a link, an <img> on any page) only shows the button: still logged in
    shown = client.get("/logout")
    assert shown.status_code == 200 and 'method="post"' in shown.get_data(as_text=True)
    assert client.get("/", headers={"Accept": "text/html"}).status_code == 200
    # POST from another port is refused too; from the page's own origin it logs out
    assert client.post("/logout", headers={"Origin": "http://localhost:8188"}).status_code == 403
    assert client.get("/", headers={"Accept": "text/html"}).status_code == 200
    out = client.post("/logout", headers={"Origin": "http://localhost"})
    assert out.status_code == 302 and out.headers["Location"] == "/login"
    assert client.get("/", headers={"Accept": "text/html"}).status_code == 302


def test_login_never_redirects_off_site(make_settings):
    client = FACTORIES["datasets"](make_settings(STUDIO_PASSWORD="pw")).test_client()
    for target in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)"):
        response = client.post("/login", data={"password": "pw", "next": target})
        assert response.headers["Location"] == "/"


def test_failed_logins_are_rate_limited(make_settings):
    client = FACTORIES["datasets"](make_settings(STUDIO_PASSWORD="pw")).test_client()
    codes = [client.post("/login", data={"password": "wrong"}).status_code for _ in range(6)]
    assert codes[:5] == [401] * 5 and codes[5] == 429
    blocked = client.post("/login", data={"password": "pw"})
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0


def test_limiter_window(tmp_path):
    limiter = LoginLimiter(tmp_path / "failures.db", max_failures=2, window_s=0.0)
    limiter.fail("a")
    limiter.fail("a")
    assert limiter.retry_after("a") == 0  # window of 0 s: old failures expire at once


def test_password_compare():
    assert password_matches("abc", "abc")
    assert not password_matches("abd", "abc")
    assert not password_matches(None, "abc")


@pytest.mark.parametrize("name", ["datasets", "trainer"])
def test_open_studio_shows_banner(name, make_settings):
    app = FACTORIES[name](make_settings())
    page = app.test_client().get("/", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert "Open studio" in page and "STUDIO_PASSWORD" in page
    assert "Demo mode" not in page


@pytest.mark.parametrize("name", ["datasets", "trainer"])
def test_demo_mode_says_so_on_every_page(name, make_settings):
    """Gibberish captions and noise previews are what the tiny models make, not a fault: the page says so."""
    app = FACTORIES[name](make_settings(STUDIO_DEMO=1, STUDIO_PASSWORD="pw"))
    client = app.test_client()
    page = client.get("/", headers={"Authorization": "Bearer pw"}).get_data(as_text=True)
    assert "Demo mode" in page and "captions are gibberish" in page and "Open studio" not in page


def test_log_out_ends_the_live_streams_of_that_login(make_settings, monkeypatch):
    """"Log out" left the pages' live streams open: job names, progress and the log went on arriving on the logged out
    screen (another tab, a shared computer) until the stream's own end, a minute on."""
    from trainer import events

    monkeypatch.setattr(events, "CHECK_EVERY_S", 0.05)
    monkeypatch.setattr(events, "SIGNED_OUT_CHECK_S", 0.1)
    client = FACTORIES["trainer"](make_settings(STUDIO_PASSWORD="s3cret")).test_client()
    client.post("/login", data={"password": "s3cret"})
    stream = client.get("/api/events?max_s=60", buffered=False)
    chunks = iter(stream.response)
    assert "retry" in next(chunks).decode() and "event: jobs" in next(chunks).decode()
    assert client.post("/logout", headers={"Origin": "http://localhost"}).status_code == 302
    rest = [chunk.decode() for chunk in chunks]
    assert rest == ['event: bye\ndata: {"reconnect":false,"signed_out":true}\n\n']
    stream.close()
    assert client.get("/api/events?max_s=0.2").status_code == 401  # and its reconnect is refused
