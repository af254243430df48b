"""The Apolo SDK (apolo-sdk, pinned in requirements/apolo.txt) against the Apolo simulator.

Follows the conformance recipe of shared/platforms/apolo.md §8. The SDK is asynchronous; each test runs its
own event loop and logs in with a token into a fresh config directory.
"""
import asyncio
import contextlib
import datetime
import tempfile
from pathlib import Path

import apolo_sdk
import pytest
from apolo_sdk import AppState, AuthError, IllegalArgumentError, ResourceNotFound
from yarl import URL

from conftest import sim_call


@pytest.fixture()
def sim(endpoints):
    ep = endpoints["apolo"]
    sim_call(ep["url"], "POST", "/reset")
    return ep


@contextlib.asynccontextmanager
async def apps_client(ep, token=None):
    cfg = Path(tempfile.mkdtemp()) / "apolo"
    await apolo_sdk.login_with_token(token or ep["credentials"]["token"], url=URL(ep["url"]), path=cfg)
    async with apolo_sdk.get(path=cfg) as client:
        yield client.apps


async def wait_state(apps, app_id, wanted, timeout=10):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (a := await apps.get(app_id)).state not in wanted:
        assert loop.time() < deadline, f"app stuck in {a.state}"
        await asyncio.sleep(0.05)
    return a


def test_recipe(sim):
    async def main():
        async with apps_client(sim) as apps:
            async with apps.list_templates() as it:
                names = [t.name async for t in it]
            assert {"shell", "postgres"} <= set(names)
            tpl = await apps.get_template("shell")
            assert tpl.version == "v2" and tpl.input is not None

            app = await apps.install({"template_name": "shell", "template_version": tpl.version,
                                      "display_name": "k8s-uid-123", "input": {}})
            assert app.state == "queued"
            a = await wait_state(apps, app.id, ("healthy", "errored", "degraded"))
            assert a.state == "healthy" and a.endpoints

            async with apps.list(states=[AppState.HEALTHY]) as it:
                found = [x async for x in it if x.display_name == "k8s-uid-123"]
            assert [x.id for x in found] == [app.id]

            out = await apps.get_output(app.id)
            assert "instance_url" in out
            async with apps.get_values(app_id=app.id) as it:
                vals = [v async for v in it]
            assert vals and all(v.instance_id == app.id for v in vals)
            async with apps.get_events(app.id) as it:
                states = [e.state async for e in it]
            assert "queued" in [str(s.value) if hasattr(s, "value") else s for s in states]
            cur = await apps.get_input(app.id)
            assert cur["input"] == {}

            await apps.configure(app.id, {"template_name": "shell", "input": {"greeting": "hi"}}, comment="c2")
            revs = await apps.get_revisions(app.id)
            assert max(r.revision_number for r in revs) == 2
            await apps.rollback(app.id, 1, comment="back")
            assert (await apps.get_input(app.id))["input"] == {}
            old = await apps.get_input(app.id, revision=2)
            assert old["input"] == {"greeting": "hi"}
            assert max(r.revision_number for r in await apps.get_revisions(app.id)) == 3

            async with apps.logs(app.id, timestamps=True) as it:
                chunks = [c async for c in it]
            assert chunks and b"app state queued" in b"".join(chunks)
            # `kubectl tether logs --since`: only lines at or after the time; the stream still closes.
            later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
            async with apps.logs(app.id, since=later) as it:
                assert [c async for c in it] == []
            async with apps.logs(app.id, since=datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)) as it:
                assert b"app state queued" in b"".join([c async for c in it])

            ups = await apps.get_upgrades([app.id])
            assert ups[0].available_versions == [] and ups[0].template_version == "v2"

            await apps.uninstall(app.id)
            await wait_state(apps, app.id, ("uninstalled",))

            with pytest.raises(ResourceNotFound):
                await apps.get("00000000-0000-0000-0000-000000000000")
            with pytest.raises((ResourceNotFound, IllegalArgumentError)):
                await apps.install({"template_name": "nope", "template_version": "1", "input": {}})
    asyncio.run(main())


def test_upgrade_and_input_validation(sim):
    async def main():
        async with apps_client(sim) as apps:
            async with apps.list_template_versions("postgres") as it:
                versions = [t.version async for t in it]
            assert versions == ["v1.0.0", "v1.1.0"]
            app = await apps.install({"template_name": "postgres", "template_version": "v1.0.0",
                                      "input": {"preset": "cpu-small", "storage_gb": 20}})
            await wait_state(apps, app.id, ("healthy",))
            async with apps.get_values(value_type="password") as it:
                scoped = [v async for v in it]
            assert [v.instance_id for v in scoped] == [app.id]
            ups = await apps.get_upgrades([app.id])
            assert ups[0].available_versions == ["v1.1.0"]
            await apps.configure(app.id, {"template_version": "v1.1.0"}, upgrade=True)
            a = await wait_state(apps, app.id, ("healthy",))
            assert a.template_version == "v1.1.0"
            with pytest.raises(IllegalArgumentError):
                await apps.install({"template_name": "postgres", "template_version": "v1.0.0",
                                    "input": {"storage_gb": "lots"}})
    asyncio.run(main())


def test_failure_state_and_bad_token(sim):
    async def main():
        async with apps_client(sim) as apps:
            app = await apps.install({"template_name": "shell", "input": {}})
            sim_call(sim["url"], "POST", "/fail", {"id": app.id, "state": "errored"})
            a = await wait_state(apps, app.id, ("errored",))
            assert a.state == "errored"
        with pytest.raises(AuthError):
            async with apps_client(sim, token="wrong"):
                pass
    asyncio.run(main())
