"""The Peak SDK (peak-sdk, pinned in requirements/peak.txt) against the Peak simulator.

Follows the conformance recipe of shared/platforms/peak.md §8. The SDK has no base-URL setting, so its
domain function is replaced before a Session is made, as that page describes.
"""
import time
import uuid

import pytest

from conftest import sim_call


@pytest.fixture()
def sim(endpoints, monkeypatch):
    ep = endpoints["peak"]
    sim_call(ep["url"], "POST", "/reset")
    import peak.session
    import peak.telemetry
    base = lambda stage, subdomain="service": ep["url"]  # noqa: E731
    monkeypatch.setattr(peak.session, "get_base_domain", base)
    monkeypatch.setattr(peak.telemetry, "get_base_domain", base)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return ep


def client(ep, token=None):
    from peak import Session
    from peak.resources import webapps
    session = Session(auth_token=token or ep["credentials"]["api_key"], stage="dev")
    return webapps.get_client(session=session)


def wait_for(c, webapp_id, status, timeout=10):
    deadline = time.time() + timeout
    while True:
        d = c.describe_webapp(webapp_id)
        if d["status"] == status:
            return d
        assert time.time() < deadline, f"webapp stuck in {d['status']}, wanted {status}"
        time.sleep(0.05)


BODY = {"name": "conf-app", "title": "Conf", "imageDetails": {"imageId": 100, "versionId": 100},
        "resources": {"instanceTypeId": 1}, "sessionStickiness": False}


def test_wrong_token_fails_at_session(sim):
    from peak import Session
    from peak.exceptions import UnauthorizedException
    with pytest.raises(UnauthorizedException):
        Session(auth_token="wrong", stage="dev")


def test_recipe_create_describe_list_update_delete(sim):
    from peak.exceptions import ConflictException, NotFoundException
    c = client(sim)
    r = c.create_webapp(dict(BODY))
    uuid.UUID(r["id"])
    d = c.describe_webapp(r["id"])
    assert d["status"] in ("CREATING", "AVAILABLE") and d["name"] == "conf-app"
    assert d["imageDetails"] == {"imageId": 100, "versionId": 100} and d["resources"]["instanceTypeId"] == 1
    wait_for(c, r["id"], "AVAILABLE")

    assert r["id"] in [w["id"] for w in c.list_webapps(name="conf-app")]
    page = c.list_webapps(page_size=1, page_number=1, return_iterator=False)
    assert {"webapps", "webappsCount", "pageCount", "pageNumber", "pageSize"} <= set(page)
    assert r["id"] not in [w["id"] for w in c.list_webapps(status=["CREATE_FAILED"])]

    with pytest.raises(ConflictException):
        c.create_webapp(dict(BODY))

    assert c.update_webapp(r["id"], {"title": "New"}) == {"id": r["id"]}
    d = c.describe_webapp(r["id"])
    assert d["title"] == "New" and d["status"] == "AVAILABLE"

    again = c.create_or_update_webapp({"name": "conf-app", "imageDetails": {"imageId": 100, "versionId": 101}})
    assert again["id"] == r["id"]
    assert c.describe_webapp(r["id"])["status"] in ("DEPLOYING", "AVAILABLE")
    d = wait_for(c, r["id"], "AVAILABLE")
    assert d["imageDetails"]["versionId"] == 101

    other = c.create_or_update_webapp({"name": "conf-app-2", "imageDetails": {"imageId": 1}})
    assert other["id"] != r["id"]
    assert c.describe_webapp(other["id"])["imageDetails"]["versionId"] == 2, "latest ready version filled in"

    assert c.delete_webapp(r["id"]) == {"id": r["id"]}
    assert c.describe_webapp(r["id"])["status"] == "DELETING"
    with pytest.raises(ConflictException):
        c.delete_webapp(r["id"])
    deadline = time.time() + 10
    while True:
        try:
            c.describe_webapp(r["id"])
        except NotFoundException:
            break
        assert time.time() < deadline, "webapp never went away"
        time.sleep(0.05)


def test_unknown_id_is_not_found(sim):
    from peak.exceptions import NotFoundException
    c = client(sim)
    missing = "00000000-0000-0000-0000-000000000000"
    with pytest.raises(NotFoundException):
        c.describe_webapp(missing)
    with pytest.raises(NotFoundException):
        c.update_webapp(missing, {"title": "x"})


def test_validation_errors_are_bad_requests(sim):
    from peak.exceptions import BadRequestException
    c = client(sim)
    with pytest.raises(BadRequestException):
        c.create_webapp({"name": "bad"})
    with pytest.raises(BadRequestException):
        c.create_webapp({"name": "bad", "imageDetails": {"imageId": "one"}})
    with pytest.raises(BadRequestException):
        c.create_webapp({"name": "bad", "imageDetails": {"imageId": 999}})


def test_pagination_walks_every_page(sim):
    c = client(sim)
    for i in range(5):
        c.create_webapp({"name": f"page-{i}", "imageDetails": {"imageId": 1}})
    names = sorted(w["name"] for w in c.list_webapps(page_size=2))
    assert names == [f"page-{i}" for i in range(5)]
    first = c.list_webapps(page_size=2, page_number=1, return_iterator=False)
    assert first["pageCount"] == 3 and first["webappsCount"] == 5 and len(first["webapps"]) == 2


def test_forced_failure_shows_create_failed(sim):
    c = client(sim)
    r = c.create_webapp({"name": "doomed", "imageDetails": {"imageId": 1}})
    sim_call(sim["url"], "POST", "/fail", {"id": r["id"]})
    wait_for(c, r["id"], "CREATE_FAILED")
    assert [w["id"] for w in c.list_webapps(status=["CREATE_FAILED"])] == [r["id"]]
