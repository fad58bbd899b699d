"""The relayer's JSON client against a real HTTP server: what it returns, and the error (and the
fix it names) for a relayer that does not answer, answers late, refuses, or sends no JSON."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from fastapi import FastAPI, HTTPException, Request, Response
from pydantic import BaseModel

from marketplace.api.listen import listen
from marketplace.protocol.errors import DepinError
from marketplace.protocol.relayer_http import RelayerClient, RelayerRefused, RelayerUnreachable
from tests.conftest import serve

SETTING = "DEPIN_REQUESTER_RELAYER_URL"


class _Notice(BaseModel):
    job_id: int
    artifact: str


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/jobs")
    def jobs(requester: str, limit: int) -> dict[str, object]:
        return {"requester": requester, "limit": limit}

    @app.post("/results")
    async def results(request: Request) -> dict[str, object]:
        return {"content_type": request.headers.get("content-type"), "body": await request.json()}

    @app.get("/busy")
    def busy() -> None:
        raise HTTPException(503, "the index is catching up with the chain")

    @app.get("/text")
    def text() -> Response:
        return Response("<html>a proxy page</html>", media_type="text/html")

    @app.get("/slow")
    async def slow() -> dict[str, str]:
        await asyncio.sleep(2)
        return {}

    return app


@pytest.fixture(scope="module")
def relayer() -> Iterator[RelayerClient]:
    url, server, thread = serve(_app())
    with RelayerClient(url + "/", timeout=5.0, url_setting=SETTING) as client:
        yield client
    server.should_exit = True
    thread.join(timeout=10)


def test_get_and_post_reach_the_relayer(relayer: RelayerClient) -> None:
    assert not relayer.base_url.endswith("/")
    assert relayer.get_json("/jobs", what="jobs", requester="0xabc", limit=7) == {
        "requester": "0xabc",
        "limit": 7,
    }
    response = relayer.post("/results", _Notice(job_id=3, artifact="ab"))
    assert response.status_code == 200
    assert response.json() == {
        "content_type": "application/json",
        "body": {"job_id": 3, "artifact": "ab"},
    }


def test_an_error_status_is_refused_with_the_relayers_message(relayer: RelayerClient) -> None:
    # `get` hands back any answer; `get_json` refuses all but 200.
    assert relayer.get("/busy").status_code == 503
    with pytest.raises(RelayerRefused) as caught:
        relayer.get_json("/busy", what="the results of job 7")
    assert caught.value.status == 503
    assert str(caught.value) == (
        f"the relayer at {relayer.base_url} answered 503 for the results of job 7: the index is "
        "catching up with the chain; retry later, or check the relayer's log"
    )
    with pytest.raises(RelayerRefused) as caught:
        relayer.get_json("/nowhere", what="the job index")
    assert str(caught.value).endswith(
        f"answered 404 for the job index: Not Found; check that the URL ({SETTING}) is a depin "
        "relayer's API serving this"
    )


def test_a_body_that_is_not_json_is_refused(relayer: RelayerClient) -> None:
    with pytest.raises(RelayerRefused, match="a body that is not JSON") as caught:
        relayer.get_json("/text", what="the provider list")
    assert caught.value.status == 200
    assert f"check that the URL ({SETTING}) is a depin relayer's API" in str(caught.value)
    assert isinstance(caught.value, DepinError) and isinstance(caught.value, RuntimeError)


def test_a_relayer_that_does_not_answer_names_the_fix() -> None:
    # A port that was bound and released: nothing listens there.
    sock = listen("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    with RelayerClient(f"http://127.0.0.1:{port}", timeout=2.0, url_setting=SETTING) as dead:
        with pytest.raises(RelayerUnreachable) as caught:
            dead.get_json("/jobs", what="jobs")
        with pytest.raises(RelayerUnreachable):
            dead.post("/results", _Notice(job_id=1, artifact="ab"))
    message = str(caught.value)
    assert message.startswith(
        f"the relayer at http://127.0.0.1:{port} is unreachable (ConnectError"
    )
    assert message.endswith(
        f"start it (`depin relayer run`) or point the client at the right URL ({SETTING})"
    )
    assert isinstance(caught.value, ConnectionError)


def test_a_relayer_that_answers_too_late_is_unreachable(relayer: RelayerClient) -> None:
    with (
        RelayerClient(relayer.base_url, timeout=0.3) as impatient,
        pytest.raises(RelayerUnreachable, match=r"did not answer GET /slow in time; start it"),
    ):
        impatient.get("/slow")
