"""Signing in on the dashboards, as a browser does it but through httpx, against a real cloud worker:
the cookie holds a server-side session, never the token, and signing out or revoking the credential
ends it (a replayed cookie gets 401 and the sign-in form); the cookie is HttpOnly, SameSite=Strict and
Secure but over plain HTTP to loopback, HTTPS answers carry HSTS, plain HTTP elsewhere gets no
sign-in; sign-in and sign-out refuse another site's form; live streams end within 2 s of a sign-out
or a revocation, and are capped (429).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import select
from sqlmodel import Session
from typer.testing import CliRunner

from cloud.api.dependencies import WEB_COOKIE
from cloud.db.tables import RETAILER_KEYS
from cloud.identity.retailers import create_retailer, key_hash
from cloud.identity.sessions import ABSOLUTE_TIMEOUT
from cloud.identity.tokens import Role, issue_token
from cloud.service import CloudService
from cloud.web.streams import STREAMS_PER_CALLER
from cloud.web.transport import HSTS
from frigo.cli import app
from tests.support.cloud import cloud_worker
from tests.support.factories import added, msg
from tests.support.pages import sign_in

HOUSEHOLD = "hh-fridge-a"
# How soon an open stream must end after a sign-out or a revocation.
ENDS_WITHIN_S = 2.0


@dataclass
class Site:
    cloud: CloudService
    url: str  # the database's

    def token(self, role: Role = "household") -> str:
        with Session(self.cloud.engine) as session:
            issued = issue_token(session, role, HOUSEHOLD if role == "household" else None, datetime.now(UTC))
            session.commit()
        return issued

    def retailer(self, name: str) -> tuple[str, str]:
        """Return a new retailer's id and key."""
        with Session(self.cloud.engine) as session:
            retailer, key = create_retailer(session, name, datetime.now(UTC))
            session.commit()
            return retailer.id, key

    def client(self, session_id: str | None = None, **headers: str) -> httpx.Client:
        cookies = {WEB_COOKIE: session_id} if session_id is not None else None
        return httpx.Client(base_url=self.cloud.url, timeout=10, cookies=cookies, headers=headers)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    url = f"sqlite:///{tmp_path_factory.mktemp('sign-in') / 'cloud.db'}"

    def enrol(service: CloudService) -> None:
        service.ingestor.process([msg(added("fridge-a", 1))])

    with cloud_worker(url, None, "sign-in", prepare=enrol) as cloud:
        yield Site(cloud, url)


def cookie_of(answer: httpx.Response) -> str:
    """Return the Set-Cookie header of the sign-in cookie."""
    (found,) = [c for c in answer.headers.get_list("set-cookie") if c.startswith(f"{WEB_COOKIE}=")]
    return found


def attributes(set_cookie: str) -> set[str]:
    return {part.strip().lower() for part in set_cookie.split(";")[1:]}


class Watched:
    """An open event stream read on a thread, noting when the server ended it."""

    def __init__(self, client: httpx.Client, path: str) -> None:
        self.opened = threading.Event()
        self.ended_at: float | None = None
        self.status: int | None = None
        self._thread = threading.Thread(target=self._read, args=(client, path), daemon=True)
        self._thread.start()
        assert self.opened.wait(5), "the stream did not open"
        assert self.status == 200, self.status

    def _read(self, client: httpx.Client, path: str) -> None:
        with client.stream("GET", path) as response:
            self.status = response.status_code
            for _ in response.iter_lines():
                self.opened.set()
        self.ended_at = time.monotonic()
        self.opened.set()

    def ended_within(self, seconds: float) -> float:
        """Return how long after now the stream ended; fail if it did not within ``seconds``."""
        started = time.monotonic()
        self._thread.join(seconds + 1)
        assert self.ended_at is not None, "the stream is still open"
        took = self.ended_at - started
        print(f"the stream ended {took:.2f} s after")
        assert took < seconds, took
        return took


def test_signing_out_ends_the_session_and_a_replayed_cookie_opens_nothing(site: Site) -> None:
    token = site.token()
    with site.client() as browser:
        answer = browser.post("/web/sign-in", data={"token": token})
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/web/households/{HOUSEHOLD}"
    assert token not in answer.headers["set-cookie"]
    session_id = answer.cookies[WEB_COOKIE]
    with site.client(session_id) as browser:
        assert browser.get(f"/web/households/{HOUSEHOLD}").status_code == 200
        assert browser.get(f"/households/{HOUSEHOLD}/inventory").status_code == 200
        signed_out = browser.post("/web/sign-out")
        assert signed_out.status_code == 303
        assert 'frigo_session=""' in signed_out.headers["set-cookie"]
    # The cookie copied before signing out: the session behind it ended on the server.
    with site.client(session_id) as replayed:
        assert replayed.get(f"/households/{HOUSEHOLD}/inventory").status_code == 401
        assert replayed.get(f"/households/{HOUSEHOLD}/stream").status_code == 401
        page = replayed.get(f"/web/households/{HOUSEHOLD}")
        assert page.status_code == 303
        assert page.headers["location"] == "/web/sign-in"
        assert replayed.get("/web").headers["location"] == "/web/sign-in"
    # The token itself still works: signing out ends the session, not the token.
    with site.client(Authorization=f"Bearer {token}") as api:
        assert api.get(f"/households/{HOUSEHOLD}/inventory").status_code == 200


def test_revoking_the_token_ends_its_web_sessions(site: Site) -> None:
    token, operator = site.token(), site.token("admin")
    session_id = sign_in(site.cloud.url, token)
    with site.client(Authorization=f"Bearer {operator}") as api:
        (row,) = [t for t in api.get("/admin/tokens").json() if t["prefix"] == token[:12]]
        assert api.post(f"/admin/tokens/{row['id']}/revoke").status_code == 200
    with site.client(session_id) as browser:
        assert browser.get(f"/households/{HOUSEHOLD}/inventory").status_code == 401
        assert browser.get(f"/web/households/{HOUSEHOLD}").headers["location"] == "/web/sign-in"


def test_an_operator_signs_in_to_the_household_it_names(site: Site) -> None:
    session_id = sign_in(site.cloud.url, site.token("admin"), household=HOUSEHOLD)
    with site.client(session_id) as browser:
        assert browser.get("/web").headers["location"] == f"/web/households/{HOUSEHOLD}"
        assert browser.get(f"/web/households/{HOUSEHOLD}").status_code == 200


def test_the_cookie_is_httponly_strict_and_secure_except_over_plain_http_to_loopback(site: Site) -> None:
    token = site.token()
    with site.client() as browser:
        plain = browser.post("/web/sign-in", data={"token": token})
        proxied = browser.post("/web/sign-in", data={"token": token}, headers={"X-Forwarded-Proto": "https"})
        api = browser.get("/healthz", headers={"X-Forwarded-Proto": "https"})
        plain_api = browser.get("/healthz")
    assert attributes(cookie_of(plain)) >= {"httponly", "samesite=strict", "path=/"}
    assert f"max-age={int(ABSOLUTE_TIMEOUT.total_seconds())}" in attributes(cookie_of(plain))
    assert "secure" not in attributes(cookie_of(plain))  # the developer's own machine
    assert "strict-transport-security" not in plain.headers
    assert "strict-transport-security" not in plain_api.headers
    # Behind a TLS-terminating proxy on this machine that says so (uvicorn trusts 127.0.0.1):
    assert attributes(cookie_of(proxied)) >= {"httponly", "samesite=strict", "secure"}
    assert proxied.headers["strict-transport-security"] == HSTS
    assert api.headers["strict-transport-security"] == HSTS  # every HTTPS answer, the API's too


def test_plain_http_to_another_host_gets_no_sign_in(site: Site) -> None:
    token = site.token()
    with site.client(Host="frigo.example") as browser:
        form = browser.get("/web/sign-in")
        posted = browser.post("/web/sign-in", data={"token": token})
    for answer in (form, posted):
        assert answer.status_code == 403
        assert "Sign-in needs HTTPS" in answer.text
        assert "set-cookie" not in answer.headers
    assert 'name="token"' not in form.text  # no field to type the token into


def test_behind_a_proxy_that_says_nothing_assume_https_makes_every_answer_https(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    url = f"sqlite:///{tmp_path_factory.mktemp('assume-https') / 'cloud.db'}"

    def enrol(service: CloudService) -> None:
        service.ingestor.process([msg(added("fridge-a", 1))])

    with cloud_worker(url, None, "assume-https", prepare=enrol, assume_https=True) as cloud:
        with Session(cloud.engine) as session:
            token = issue_token(session, "household", HOUSEHOLD, datetime.now(UTC))
            session.commit()
        with httpx.Client(base_url=cloud.url, timeout=10, headers={"Host": "frigo.example"}) as browser:
            signed_in = browser.post("/web/sign-in", data={"token": token})
            api = browser.get("/healthz")
    assert signed_in.status_code == 303
    assert "secure" in attributes(cookie_of(signed_in))
    assert signed_in.headers["strict-transport-security"] == HSTS
    assert api.headers["strict-transport-security"] == HSTS


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # a sibling host is another site too
        {"Origin": "https://evil.example"},  # a browser too old for Sec-Fetch-Site
        {"Origin": "null"},
    ],
    ids=["cross-site", "same-site", "other-origin", "null-origin"],
)
def test_another_sites_form_can_neither_sign_in_nor_sign_out(site: Site, headers: dict[str, str]) -> None:
    token = site.token()
    session_id = sign_in(site.cloud.url, token)
    with site.client(session_id, **headers) as attacker:
        forged_in = attacker.post("/web/sign-in", data={"token": site.token()})
        forged_out = attacker.post("/web/sign-out")
    for answer in (forged_in, forged_out):
        assert answer.status_code == 403
        assert "another site" in answer.text
        assert "set-cookie" not in answer.headers
    with site.client(session_id) as browser:  # still signed in
        assert browser.get(f"/households/{HOUSEHOLD}/inventory").status_code == 200


def test_the_sites_own_forms_sign_in_and_out(site: Site) -> None:
    own = {"Sec-Fetch-Site": "same-origin", "Origin": site.cloud.url}
    with site.client(**own) as browser:
        assert browser.post("/web/sign-in", data={"token": site.token()}).status_code == 303
        assert browser.post("/web/sign-out").status_code == 303
    # Origin alone, naming this host, is enough (older browsers), and so is neither header (curl).
    with site.client(Origin=site.cloud.url) as browser:
        assert browser.post("/web/sign-in", data={"token": site.token()}).status_code == 303


def test_signing_out_ends_an_open_household_stream_within_2_s(site: Site) -> None:
    session_id = sign_in(site.cloud.url, site.token())
    with site.client(session_id) as browser, site.client(session_id) as page:
        stream = Watched(browser, f"/households/{HOUSEHOLD}/stream")
        assert page.post("/web/sign-out").status_code == 303
        stream.ended_within(ENDS_WITHIN_S)


def key_id(site: Site, key: str) -> int:
    with site.cloud.engine.connect() as connection:
        found = connection.execute(
            select(RETAILER_KEYS.c.id).where(RETAILER_KEYS.c.key_hash == key_hash(key))
        ).scalar_one()
    return int(found)


@pytest.mark.parametrize("by", ["command line", "API"])
def test_revoking_a_retailer_key_ends_its_open_streams_within_2_s(site: Site, by: str) -> None:
    retailer, key = site.retailer(f"Stream Shop {by}")
    session_id = sign_in(site.cloud.url, key)
    with (
        site.client(session_id) as browser,
        site.client(Authorization=f"Bearer {key}") as integration,
    ):
        streams = [Watched(browser, "/retailer/stream"), Watched(integration, "/retailer/stream")]
        if by == "API":
            with site.client(Authorization=f"Bearer {site.token('admin')}") as operator:
                revoked = operator.post(f"/admin/retailers/{retailer}/keys/{key_id(site, key)}/revoke")
            assert revoked.status_code == 200
        else:
            revoked_cli = CliRunner().invoke(
                app,
                ["retailers", "revoke-key", retailer, str(key_id(site, key)), "--database-url", site.url],
            )
            assert revoked_cli.exit_code == 0, revoked_cli.output
        for stream in streams:
            stream.ended_within(ENDS_WITHIN_S)
        assert browser.get("/retailer/orders").status_code == 401
        assert browser.get("/retailer/stream").status_code == 401
        assert browser.get("/web/retailer").headers["location"] == "/web/sign-in"
        assert integration.get("/retailer/orders").status_code == 401


def test_streams_are_capped_per_credential_and_per_worker(site: Site) -> None:
    slots = site.cloud.app.state.web_streams
    first, second, third = site.token(), site.token(), site.token()
    path = f"/households/{HOUSEHOLD}/stream"
    with ExitStack() as stack:

        def open_stream(token: str) -> httpx.Response:
            client = stack.enter_context(site.client(Authorization=f"Bearer {token}"))
            return stack.enter_context(client.stream("GET", path))

        for _ in range(STREAMS_PER_CALLER):
            assert open_stream(first).status_code == 200
        refused = open_stream(first)
        assert refused.status_code == 429
        assert "close a tab" in refused.read().decode()
        assert open_stream(second).status_code == 200  # another credential has its own
        total = slots.total
        slots.total = STREAMS_PER_CALLER + 1  # a small worker: shrunk, not filled with 200 streams
        try:
            full = open_stream(third)
            assert full.status_code == 429
            assert "try again" in full.read().decode()
        finally:
            slots.total = total
    # Closed by the clients: their places come back.
    deadline = time.monotonic() + 5
    while slots.open.total() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert slots.open.total() == 0
    with site.client(Authorization=f"Bearer {first}") as client, client.stream("GET", path) as again:
        assert again.status_code == 200
