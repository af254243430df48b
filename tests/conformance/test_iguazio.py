"""The Iguazio management SDK (igz-mgmt, pinned in requirements/iguazio.txt) against the Iguazio simulator.

Follows the conformance recipe of shared/platforms/iguazio.md §8. Waited SDK calls sleep 5 s before they
poll, so most steps use wait_for_completion=False and Job.wait_for_completion with a short interval; one
step keeps the SDK's own waiting path.
"""
import httpx
import igz_mgmt
import pytest
from igz_mgmt.schemas.app_services import CredentialsSpec, ResourcesSpec, SystemResources

from conftest import sim_call

NAME = "jupyter-sdk-test"


@pytest.fixture()
def sim(endpoints):
    ep = endpoints["iguazio"]
    sim_call(ep["url"], "POST", "/reset")
    return ep


def client(ep, **kw):
    creds = ep["credentials"]
    kw.setdefault("username", creds["username"])
    kw.setdefault("access_key", creds["access_key"])
    return igz_mgmt.Client(endpoint=ep["url"], **kw)


def finish(c, job):
    assert job is not None
    done = igz_mgmt.Job.wait_for_completion(c, job.id, job_completion_retry_interval=0.05, timeout=30)
    return done


def spec(**kw):
    return igz_mgmt.AppServiceSpec(
        name=NAME, owner="admin", description="d1", credentials=CredentialsSpec(username="admin"),
        resources=ResourcesSpec(limits=SystemResources(cpu="2", memory="4Gi")),
        jupyter=igz_mgmt.JupyterSpec(), scale_to_zero=igz_mgmt.AppServiceScaleToZeroSpecPresets.disabled, **kw)


def state_of(c, name=NAME):
    return igz_mgmt.AppServices.get(c, name).status.state


def test_handshake(sim):
    c = client(sim)
    assert c.tenant_id and c.username == "admin"


def test_recipe_lifecycle(sim):
    c = client(sim)
    job = igz_mgmt.AppServices.create_or_update(c, spec())  # the SDK's own waiting path, once
    assert job.state == "completed"
    svc = igz_mgmt.AppServices.get(c, NAME)
    assert svc.status.state == "ready" and svc.spec.kind == "jupyter" and svc.spec.mark_as_changed is False
    assert svc.status.urls and svc.status.urls[0].url.startswith("https://")

    svc.spec.description = "new-description"
    finish(c, igz_mgmt.AppServices.create_or_update(c, svc, wait_for_completion=False))
    assert igz_mgmt.AppServices.get(c, NAME).spec.description == "new-description"

    finish(c, igz_mgmt.AppServices.restart(c, NAME, wait_for_completion=False))
    assert state_of(c) == "ready"
    finish(c, igz_mgmt.AppServices.disable(c, NAME, wait_for_completion=False))
    assert state_of(c) == "disabled"
    finish(c, igz_mgmt.AppServices.enable(c, NAME, wait_for_completion=False))
    assert state_of(c) == "ready"

    svc = igz_mgmt.AppServices.get(c, NAME)
    svc.spec.scale_to_zero = igz_mgmt.AppServiceScaleToZeroSpecPresets.one_minute
    finish(c, igz_mgmt.AppServices.create_or_update(c, svc.spec, wait_for_completion=False))
    assert igz_mgmt.AppServices.get(c, NAME).spec.scale_to_zero.mode == "enabled"
    finish(c, igz_mgmt.AppServices.scale_from_zero(c, NAME, wait_for_completion=False))
    counters = sim_call(sim["url"], "GET", "/counters")
    assert counters["PUT /api/app_services_manifests"] == 7
    assert state_of(c) == "ready"

    finish(c, igz_mgmt.AppServices.remove(c, NAME, wait_for_completion=False))
    assert igz_mgmt.AppServices.get(c, NAME) is None


def test_other_services_survive_a_write(sim):
    c = client(sim)
    sim_call(sim["url"], "POST", "/seed", {"service": {"name": "other", "kind": "shell", "description": "keep"}})
    finish(c, igz_mgmt.AppServices.create_or_update(c, spec(), wait_for_completion=False))
    other = igz_mgmt.AppServices.get(c, "other")
    assert other is not None and other.spec.description == "keep" and other.status.state == "ready"


def test_unknown_service_and_bad_key(sim):
    c = client(sim)
    with pytest.raises(igz_mgmt.exceptions.AppServiceNotExistsException):
        igz_mgmt.AppServices.restart(c, "nope")
    with pytest.raises(httpx.HTTPStatusError) as err:
        igz_mgmt.Client(endpoint=sim["url"], access_key="wrong-key")
    assert err.value.response.status_code == 401


def test_unknown_job_is_not_found(sim):
    c = client(sim)
    with pytest.raises(igz_mgmt.exceptions.ResourceNotFoundException):
        igz_mgmt.Job.wait_for_completion(c, "00000000-0000-0000-0000-000000000000",
                                         job_completion_retry_interval=0.05, timeout=5)


def test_failed_job_names_the_service(sim):
    c = client(sim)
    sim_call(sim["url"], "POST", "/fail", {"service": NAME})
    with pytest.raises(RuntimeError) as err:
        igz_mgmt.AppServices.create_or_update(c, spec())
    assert f"Service {NAME} failed due to" in str(err.value)
    svc = igz_mgmt.AppServices.get(c, NAME)
    assert svc.status.state == "error" and svc.status.error_info.description


def test_password_login(sim):
    c = igz_mgmt.Client(endpoint=sim["url"], username="admin", password=sim["seeded"]["password"])
    c.login()
    assert igz_mgmt.AppServices.get(c, "absent") is None
