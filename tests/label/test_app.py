"""The labelling app in process (FastAPI's TestClient): tokens, isolation, pages, the JSON API, limits, headers."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from rewardkit.label.app import COOKIE, create_app
from rewardkit.label.store import NewItem, Store
from tests.label.conftest import pairwise_store

ADMIN = "admin-secret-token"
ROUTES = [("GET", "/"), ("GET", "/mine"), ("GET", "/item/1"), ("POST", "/judge"), ("GET", "/progress"),
          ("GET", "/api/next"), ("POST", "/api/judgments"), ("POST", "/api/skip"), ("GET", "/api/mine"),
          ("GET", "/api/progress"), ("GET", "/static/label.js"), ("GET", "/static/label.css"), ("GET", "/nowhere")]


@pytest.fixture
def setup(tmp_path):
    store = pairwise_store(tmp_path / "labels.sqlite", n=3, needed=2)
    tokens = {name: store.add_annotator(name) for name in ("ann", "bob")}
    client = TestClient(create_app(store, ADMIN, max_body_bytes=4096))
    return store, tokens, client


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("method, path", ROUTES)
def test_every_route_answers_401_without_a_valid_token(setup, method, path):
    _, tokens, client = setup
    for headers in ({}, bearer("wrong"), {"Cookie": f"{COOKIE}=wrong"}):
        response = client.request(method, path, headers=headers, data={"item_id": "1", "choice": "A"})
        assert response.status_code == 401, (method, path, headers)
        assert response.headers["www-authenticate"] == "Bearer"
        assert "default-src 'none'" in response.headers["content-security-policy"]
    assert client.get(f"{path}?token=wrong").status_code == 401


def test_link_token_becomes_a_cookie_and_leaves_the_url(setup):
    store, tokens, client = setup
    response = client.get(f"/?token={tokens['ann']}", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert f"{COOKIE}={tokens['ann']}" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    page = client.get("/")  # the client keeps the cookie
    assert page.status_code == 200 and "ann" in page.text and "Item 1" in page.text
    for header, value in (("x-content-type-options", "nosniff"), ("referrer-policy", "no-referrer"),
                          ("cache-control", "no-store")):
        assert page.headers[header] == value


def test_judging_through_the_form(setup):
    store, tokens, client = setup
    client.get(f"/?token={tokens['ann']}")
    response = client.post("/judge", data={"item_id": "1", "choice": "B", "strength": "3", "reason": "clearer"},
                           follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/"
    (j,) = store.judgments()
    assert (j.item_id, j.annotator, j.value, j.strength, j.reason) == (1, "ann", "B", 3, "clearer")
    assert "Item 2" in client.get("/").text
    bad = client.post("/judge", data={"item_id": "2", "choice": "C"})
    assert bad.status_code == 422 and "choice must be one of" in bad.text and len(store.judgments()) == 1
    assert "Item 2" in bad.text
    for item_id in ("²", "9" * 30):
        assert client.post("/judge", data={"item_id": item_id, "choice": "A"}).status_code == 422
    assert client.get(f"/item/{10 ** 30}").status_code == 404
    # a rejected revision shows the item being revised again, and leases no other
    wrong = client.post("/judge", data={"item_id": "1", "choice": "C"})
    assert wrong.status_code == 422 and "Item 1" in wrong.text and "revising your judgment" in wrong.text
    assert not store.has_lease(store.annotator_for_token(tokens["ann"]).id, 3)
    client.post("/judge", data={"item_id": "2", "skip": "1"})
    assert "Item 3" in client.get("/").text
    # revising one's own judgment
    assert 'class="choice current"' in client.get("/item/1").text
    client.post("/judge", data={"item_id": "1", "choice": "tie"})
    assert [(j.item_id, j.value, j.strength) for j in store.judgments()] == [(1, "tie", None)]


def test_an_annotator_cannot_read_or_change_anothers_judgments(setup):
    store, tokens, client = setup
    ann, bob = bearer(tokens["ann"]), bearer(tokens["bob"])
    item = client.get("/api/next", headers=ann).json()["item"]
    assert client.post("/api/judgments", headers=ann, json={"item_id": item["id"], "value": "A",
                                                            "reason": "ann's secret"}).status_code == 201
    # bob: no page or endpoint shows ann's item 1 judgment, and he cannot overwrite it
    assert client.get(f"/item/{item['id']}", headers=bob).status_code == 404
    assert client.post("/api/judgments", headers=bob, json={"item_id": item["id"] + 1, "value": "B"}).status_code \
        == 404  # not leased to bob
    assert client.get("/api/mine", headers=bob).json() == {"judgments": []}
    assert "ann's secret" not in client.get("/mine", headers=bob).text
    assert client.get("/api/progress", headers=bob).status_code == 403
    assert client.get("/progress", headers=bob).status_code == 403
    # bob judging the same item records bob's own row; ann's stays as it was
    bob_item = client.get("/api/next", headers=bob).json()["item"]
    assert bob_item["id"] == item["id"]  # it needs two judgments
    assert client.post("/api/judgments", headers=bob, json={"item_id": item["id"], "value": "B"}).status_code == 201
    assert {(j.annotator, j.value, j.reason) for j in store.judgments()} == {("ann", "A", "ann's secret"),
                                                                            ("bob", "B", None)}
    assert client.get("/api/mine", headers=ann).json()["judgments"][0]["reason"] == "ann's secret"
    # the same submission again (a retry) is one row, not two
    again = client.post("/api/judgments", headers=bob, json={"item_id": item["id"], "value": "B"})
    assert again.status_code == 200 and again.json()["new"] is False and len(store.judgments()) == 2


def test_progress_page_and_api_for_the_admin(setup):
    store, tokens, client = setup
    for name in ("ann", "bob"):
        item = client.get("/api/next", headers=bearer(tokens[name])).json()["item"]
        client.post("/api/judgments", headers=bearer(tokens[name]), json={"item_id": item["id"], "value": "A"})
    data = client.get("/api/progress", headers=bearer(ADMIN)).json()
    assert data["items"] == 3 and data["complete"] == 1 and data["judgments"] == 2
    assert {k: v["judgments"] for k, v in data["annotators"].items()} == {"ann": 1, "bob": 1}
    assert data["agreement"]["units"] == 1 and data["agreement"]["krippendorff_alpha"] is None  # one value only
    html = client.get("/progress", headers=bearer(ADMIN)).text
    assert re.search(r"<strong>1</strong> of 3 items complete", html)
    assert client.get("/", headers=bearer(ADMIN)).status_code == 403


def test_limits_and_cross_site_posts(setup):
    store, tokens, client = setup
    ann = bearer(tokens["ann"])
    assert client.post("/api/judgments", headers=ann, content=b"x" * 5000).status_code == 413
    assert client.post("/api/judgments", headers=ann, content=b"{bad").status_code == 400
    for body in ({"item_id": 1, "value": "A", "reason": 5}, {"item_id": 1, "value": "A", "strength": 2.9},
                 {"item_id": 10 ** 30, "value": "A"}):
        assert client.post("/api/judgments", headers=ann, json=body).status_code in (404, 422), body
    assert client.post("/api/judgments", headers=ann, content=b"[" * 4000).status_code == 400  # nesting past the stack
    assert client.post("/judge", headers=ann | {"Origin": "http://evil.example"},
                       data={"item_id": "1", "choice": "A"}).status_code == 403
    assert client.post("/judge", headers=ann | {"Sec-Fetch-Site": "cross-site"},
                       data={"item_id": "1", "choice": "A"}).status_code == 403
    assert store.judgments() == []


def test_ranking_rating_and_thumbs_forms(tmp_path):
    for task, responses, choice, stored in (("rankings", ["x", "y", "z"], "3 1 2", [2, 0, 1]),
                                            ("ratings", ["x"], "4", 4), ("binary", ["x"], "0", 0)):
        store = Store(tmp_path / f"{task}.sqlite", create=True)
        store.add_items(task, [NewItem("p", responses)], 1, scale=7)
        client = TestClient(create_app(store, ADMIN))
        client.get(f"/?token={store.add_annotator('ann')}")
        page = client.get("/").text
        if task == "ratings":
            assert page.count('name="choice" value=') == 7 and 'data-key="7"' in page
        client.post("/judge", data={"item_id": "1", "choice": choice})
        assert [j.value for j in store.judgments()] == [stored], task


def test_the_pairs_page_says_how_the_strength_goes_before_or_after_the_choice(tmp_path):
    store = Store(tmp_path / "labels.sqlite", create=True)
    store.add_items("pairs", [NewItem("中文问题：哪个回答更好？", ["这是第一个回答。", "An answer in English."])], 1)
    token = store.add_annotator("ann")
    waiting = TestClient(create_app(store, ADMIN, strength_wait=1.5))
    waiting.get(f"/?token={token}")
    page = waiting.get("/").text
    assert 'data-strength-wait="1500"' in page and 'id="pending"' in page and "hidden>" in page
    hint = re.search(r'<p class="hint" id="strength-hint">(.*?)</p>', page).group(1)
    assert "before or after A / B" in hint and "waits 1.5 s" in hint and "<noscript>" in hint
    # the prompt and the first response are Chinese, the second is not: only they carry lang="zh"
    assert page.startswith('<!doctype html><html lang="en">')
    assert re.findall(r'<div class="md"( lang="\w+")?>', page) == [' lang="zh"', ' lang="zh"', '']
    at_once = TestClient(create_app(store, ADMIN, strength_wait=0))
    at_once.get(f"/?token={token}")
    page = at_once.get("/").text
    assert 'data-strength-wait="0"' in page and 'id="pending"' not in page
    assert "Choose the strength before A / B, which submit at once." in page
