"""The Civis SDK (civis, pinned in requirements/civis.txt) against the Civis simulator.

Follows the conformance recipe of shared/platforms/civis.md §8: the SDK downloads the simulator's API spec
(GET /endpoints) and builds client.services from it, so these tests also judge that spec.
"""
import base64
import collections
import json
import time
import urllib.error
import urllib.request

import civis
import pytest

from conftest import sim_call


@pytest.fixture()
def sim(endpoints, monkeypatch):
    ep = endpoints["civis"]
    sim_call(ep["url"], "POST", "/reset")
    monkeypatch.setenv("CIVIS_API_ENDPOINT", ep["url"])
    return ep


def client(ep, key=None):
    return civis.APIClient(api_key=key or ep["credentials"]["api_key"], force_refresh_api_spec=True)


def wait_running(c, svc_id, timeout=10):
    deadline = time.time() + timeout
    while True:
        cur = c.services.get(svc_id).current_deployment
        if cur and cur.state == "running":
            return cur
        assert time.time() < deadline, f"deployment stuck in {cur and cur.state}"
        time.sleep(0.05)


def test_the_spec_yields_every_services_method(sim):
    methods = {m for m in dir(client(sim).services) if not m.startswith("_")}
    expected = {"list", "post", "get", "put", "patch", "put_archive", "post_clone", "list_deployments",
                "post_deployments", "get_deployments", "delete_deployments", "post_redeploy",
                "list_deployments_logs", "post_tokens", "list_tokens", "delete_tokens", "list_shares",
                "put_shares_users", "delete_shares_users", "put_shares_groups", "delete_shares_groups",
                "list_dependencies", "put_transfer", "list_projects", "put_projects", "delete_projects"}
    assert expected <= methods
    assert "delete" not in methods, "the deprecated DELETE is skipped by the SDK"


def test_recipe(sim):
    c = client(sim)
    svc = c.services.post(name="op-test", docker_image_name="nginx", docker_image_tag="1.25",
                          replicas=1, cpu=500, memory=1024, environment_variables={"MY_VAR": "x"},
                          schedule={"runtime_plan": "always_on", "recurrences": []})
    assert svc.id and svc.current_deployment is None and svc.environment_variables["MY_VAR"] == "x"
    assert c.services.get(svc.id).docker_image_tag == "1.25"
    assert c.services.patch(svc.id, docker_image_tag="1.26").docker_image_tag == "1.26"
    assert any(s.id == svc.id for s in c.services.list(iterator=True) if s.name == "op-test")

    dep = c.services.post_deployments(svc.id)
    assert dep.state == "pending"
    cur = wait_running(c, svc.id)
    assert cur.docker_image_tag == "1.26" and c.services.get(svc.id).current_url

    dep2 = c.services.post_redeploy(svc.id)
    assert dep2.deployment_id != dep.deployment_id
    assert c.services.get_deployments(svc.id, dep.deployment_id).state == "terminated"
    assert isinstance(c.services.list_deployments_logs(svc.id, dep2.deployment_id), list)
    # What `kubectl tether logs` asks: every field, a start_at bound (inclusive) and a limit.
    logs = c.services.list_deployments_logs(svc.id, dep.deployment_id)
    assert logs and all(l.message and l.stream in ("stdout", "stderr") and l.created_at and l.source for l in logs)
    assert [l.created_at for l in logs] == sorted(l.created_at for l in logs), "oldest first"
    since = c.services.list_deployments_logs(svc.id, dep.deployment_id, start_at=logs[-1].created_at)
    assert [l.message for l in since] == [logs[-1].message]
    assert c.services.list_deployments_logs(svc.id, dep.deployment_id, start_at="2999-01-01T00:00:00Z") == []
    assert len(c.services.list_deployments_logs(svc.id, dep.deployment_id, limit=1)) == 1
    assert len(c.services.list_deployments(svc.id, limit=1)) == 1

    tok = c.services.post_tokens(svc.id, "ci")
    assert tok.token and all("token" not in t.json() for t in c.services.list_tokens(svc.id))
    c.services.delete_tokens(svc.id, tok.id)
    assert c.services.list_tokens(svc.id) == []

    c.services.delete_deployments(svc.id, dep2.deployment_id)
    assert c.services.put_archive(svc.id, True).archived is True
    assert all(s.id != svc.id for s in c.services.list(iterator=True))
    assert any(s.id == svc.id for s in c.services.list(archived="all", iterator=True))

    with pytest.raises(civis.base.CivisAPIError) as err:
        c.services.get(999999999)
    assert err.value.status_code == 404


def test_environment_variable_keys_are_kept_byte_for_byte(sim):
    c = client(sim)
    svc = c.services.post(name="env", docker_image_name="nginx", environment_variables={"snake_key": "1", "MixedCase": "2"})
    got = c.services.get(svc.id)
    assert got.environment_variables["snake_key"] == "1" and got.environment_variables["MixedCase"] == "2"
    wire = sim_call(sim["url"], "GET", "/state")["services"][0]["environmentVariables"]
    assert wire == {"snake_key": "1", "MixedCase": "2"}


def test_pagination_stops_on_an_empty_page(sim):
    c = client(sim)
    for i in range(5):
        c.services.post(name=f"svc-{i}", docker_image_name="nginx")
    assert len(c.services.list(limit=2, page_num=3)) == 1
    assert c.services.list(limit=2, page_num=4) == []
    assert sorted(s.name for s in c.services.list(iterator=True)) == [f"svc-{i}" for i in range(5)]


def test_shares_projects_clone_transfer(sim):
    c = client(sim)
    svc = c.services.post(name="shared", docker_image_name="nginx", credentials=[7])
    index = c.services.put_shares_users(svc.id, [2, 3], "read", send_shared_email=False)
    assert [u["id"] for u in index.readers["users"]] == [2, 3]
    shares = c.services.list_shares(svc.id)
    assert len(shares) == 1 and shares[0].total_user_shares == 3
    c.services.delete_shares_users(svc.id, 2)
    c.services.put_shares_groups(svc.id, [9], "write")
    assert [g["id"] for g in c.services.list_shares(svc.id)[0].writers["groups"]] == [9]
    c.services.delete_shares_groups(svc.id, 9)
    assert c.services.list_shares(svc.id)[0].writers["groups"] == []

    c.services.put_projects(svc.id, 2)
    assert [p.id for p in c.services.list_projects(svc.id)] == [2]
    c.services.delete_projects(svc.id, 2)
    assert c.services.list_projects(svc.id) == []
    with pytest.raises(civis.base.CivisAPIError) as err:
        c.services.put_projects(svc.id, 999)
    assert err.value.status_code == 404

    clone = c.services.post_clone(svc.id)
    assert clone.id != svc.id and clone.docker_image_name == "nginx" and clone.name == "Clone of shared"
    assert [d.id for d in c.services.list_dependencies(svc.id)] == [7]
    c.services.put_transfer(svc.id, 5, False)
    assert c.services.get(svc.id).user.id == 5


def test_crashing_image_ends_terminated(sim):
    c = client(sim)
    svc = c.services.post(name="crash", docker_image_name="registry/fail-on-start")
    dep = c.services.post_deployments(svc.id)
    deadline = time.time() + 10
    while (d := c.services.get_deployments(svc.id, dep.deployment_id)).state == "pending":
        assert time.time() < deadline
        time.sleep(0.05)
    assert d.state == "terminated" and "crash" in d.state_message.lower()


def raw_get(sim, path, key=None):
    auth = base64.b64encode(f"{key or sim['credentials']['api_key']}:".encode()).decode()
    req = urllib.request.Request(sim["url"] + path, headers={"Authorization": f"Basic {auth}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read(), object_pairs_hook=collections.OrderedDict)


def test_wrong_key_fails_the_spec_download_and_calls(sim):
    import requests
    with pytest.raises(requests.exceptions.HTTPError, match="401"):
        client(sim, key="wrong-key")
    spec = raw_get(sim, "endpoints")
    c = civis.APIClient(api_key="wrong-key", local_api_spec=spec)
    with pytest.raises(civis.base.CivisAPIKeyError):
        c.services.list()


def test_token_without_name_is_a_bad_request(sim):
    svc = client(sim).services.post(name="t", docker_image_name="nginx")
    auth = base64.b64encode(f"{sim['credentials']['api_key']}:".encode()).decode()
    req = urllib.request.Request(f"{sim['url']}services/{svc.id}/tokens", data=b"{}", method="POST",
                                 headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 400
    assert json.loads(err.value.read())["errorDescription"] == "name is required"
