"""The UbiOps SDK (ubiops, pinned in requirements.txt) against the UbiOps simulator.

Follows the conformance recipe of shared/platforms/ubiops.md §8, plus errors, filters and auth.
"""
import time

import pytest
import ubiops

from conftest import sim_call


@pytest.fixture()
def sim(endpoints):
    ep = endpoints["ubiops"]
    sim_call(ep["url"], "POST", "/reset")
    return ep


def api_for(ep, token=None):
    token = token or ep["credentials"]["token"]
    cfg = ubiops.Configuration(host=ep["url"], api_key={"Authorization": f"Token {token}"})
    return ubiops.CoreApi(ubiops.ApiClient(cfg))


def create(api, project, name="svc-1", **kw):
    body = dict(name=name, deployment="dep-1", port=8080)
    body.update(kw)
    return api.services_create(project, ubiops.ServiceCreate(**body))


def test_ping(sim):
    assert api_for(sim).service_status().status == "ok"


def test_recipe_create_get_list_update_status_delete(sim):
    api = api_for(sim)
    project = sim["credentials"]["project"]
    s = create(api, project, version="v1", labels={"env": "test"}, authentication_required=True)
    assert s.name == "svc-1" and s.version == "v1" and s.id and s.endpoint and s.time_created
    assert s.endpoint == f"https://{s.id}.services.ubiops.com"

    assert api.services_get(project, "svc-1").id == s.id
    assert [x.name for x in api.services_list(project, labels="env:test")] == ["svc-1"]
    assert api.services_list(project, labels="env:nope") == []
    v1_id = api.deployment_versions_get(project, "dep-1", "v1").id
    v2_id = api.deployment_versions_get(project, "dep-1", "v2").id
    assert len(api.services_list(project, deployment_version_ids=v1_id)) == 1
    assert api.services_list(project, deployment_version_ids=v2_id) == []

    u = api.services_update(project, "svc-1", ubiops.ServiceUpdate(version="v2", port=9090))
    assert u.port == 9090 and u.version == "v2" and u.labels == {"env": "test"}
    assert u.time_updated >= s.time_updated
    assert u.authentication_required is True

    deadline = time.time() + 10
    while True:
        st = api.services_status_get(project, "svc-1")
        assert st.id == s.id and isinstance(st.ready, bool)
        if st.ready:
            assert st.instances_ready >= 1
            break
        assert time.time() < deadline, "service never became ready"
        time.sleep(0.1)

    assert api.services_delete(project, "svc-1") is None
    with pytest.raises(ubiops.ApiException) as err:
        api.services_get(project, "svc-1")
    assert err.value.status == 404
    assert "Error: Service not found" in str(err.value)


def test_duplicate_name_is_a_conflict(sim):
    api = api_for(sim)
    create(api, "proj")
    with pytest.raises(ubiops.ApiException) as err:
        create(api, "proj")
    assert err.value.status == 409
    assert "already exists" in str(err.value)


def test_unknown_deployment_or_version_is_a_bad_request(sim):
    api = api_for(sim)
    with pytest.raises(ubiops.ApiException) as err:
        create(api, "proj", name="svc-x", deployment="missing", port=80)
    assert err.value.status == 400 and "Deployment 'missing' not found" in str(err.value)
    with pytest.raises(ubiops.ApiException) as err:
        create(api, "proj", name="svc-y", version="v9")
    assert err.value.status == 400 and "Version 'v9' of deployment 'dep-1' not found" in str(err.value)


def test_unknown_project_is_not_found(sim):
    with pytest.raises(ubiops.ApiException) as err:
        api_for(sim).services_list("no-such-project")
    assert err.value.status == 404


def test_wrong_token_is_unauthorized(sim):
    with pytest.raises(ubiops.ApiException) as err:
        api_for(sim, token="wrong").services_list("proj")
    assert err.value.status == 401


def test_partial_update_keeps_untouched_fields_and_rename_checks_uniqueness(sim):
    api = api_for(sim)
    create(api, "proj", name="a", description="first", request_logging_excluded_extensions=["svg"])
    create(api, "proj", name="b")
    u = api.services_update("proj", "a", ubiops.ServiceUpdate(rate_limit=100))
    assert u.description == "first" and u.request_logging_excluded_extensions == ["svg"] and u.rate_limit == 100
    with pytest.raises(ubiops.ApiException) as err:
        api.services_update("proj", "a", ubiops.ServiceUpdate(name="b"))
    assert err.value.status == 409
    renamed = api.services_update("proj", "a", ubiops.ServiceUpdate(name="c"))
    assert renamed.name == "c" and api.services_get("proj", "c").id == renamed.id


def test_service_following_the_default_version_tracks_it(sim):
    api = api_for(sim)
    create(api, "proj")  # no version: follows dep-1's default (v1)
    v1 = api.deployment_versions_get("proj", "dep-1", "v1").id
    v2 = api.deployment_versions_get("proj", "dep-1", "v2").id
    assert len(api.services_list("proj", deployment_version_ids=v1)) == 1
    api.deployments_update("proj", "dep-1", ubiops.DeploymentUpdate(default_version="v2"))
    assert len(api.services_list("proj", deployment_version_ids=v2)) == 1


def test_sdk_created_fixtures(sim):
    api = api_for(sim)
    api.deployments_create("proj", ubiops.DeploymentCreate(name="dep-2", input_type="plain", output_type="plain"))
    api.deployment_versions_create("proj", "dep-2", ubiops.DeploymentVersionCreate(version="v1"))
    assert api.deployments_get("proj", "dep-2").default_version == "v1"
    s = create(api, "proj", name="svc-2", deployment="dep-2")
    assert s.deployment == "dep-2" and s.version is None


def test_injected_429_is_retried_by_the_sdk(sim):
    api = api_for(sim)
    sim_call(sim["url"], "POST", "/faults", {"route": "/v2.1/projects/{project_name}/services",
                                              "method": "GET", "status": 429, "retryAfter": 0, "times": 1})
    assert api.services_list("proj") == []
    counters = sim_call(sim["url"], "GET", "/counters")
    assert counters["GET /v2.1/projects/{project_name}/services"] == 2
