"""Destination clients against the request shapes their vendors document, through httpx's
MockTransport and respx: no request leaves the machine."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import httpx
import pytest
import respx
from conftest import T

from console.config import parse_config
from console.destinations import (
    DestinationNotConfigured,
    OutboundAction,
    create_client,
    mask_secret,
    redact,
)
from console.dispatch import dispatch_once
from console.playbooks.catalog import Destination, SecretRef
from store import runs
from store.memberships import refresh
from store.runs import Target

ACTION = OutboundAction(
    action_id=7, run_id=3, playbook="at-risk-rescue", playbook_name="Problem resolution", segment="At-Risk",
    user_id="user 1/é", email="ada@example.com", account_id="acme", step=0, channel="email", content="4242",
    idempotency_key="01J0000000000000000000TEST", held_out=False, created_at=T,
)
PROPERTIES = {"playbook": "at-risk-rescue", "run_id": 3, "action_id": 7, "step": 0, "channel": "email",
              "content": "4242"}


def destination(kind: str, fields: dict | None = None, **secret_envs: str) -> Destination:
    return Destination(kind, kind, fields or {}, {key: SecretRef(env=env) for key, env in secret_envs.items()})


def capture(client, action: OutboundAction = ACTION) -> httpx.Request:
    """Send the client's request for `action` through a MockTransport; return what arrived."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        assert http.send(client.build_request(action)).status_code == 200
    return seen[0]


def basic_credentials(request: httpx.Request) -> tuple[str, str]:
    scheme, _, encoded = request.headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    user, _, password = base64.b64decode(encoded).decode().partition(":")
    return user, password


def test_webhook_signs_raw_body():
    client = create_client(destination("webhook", {"url": "https://hooks.example.com/segops"}, secret="HOOK_SECRET"),
                           environ={"HOOK_SECRET": "s3cret-signing-key"})
    request = capture(client)
    body = request.content
    expected = hmac.new(b"s3cret-signing-key", body, hashlib.sha256).hexdigest()
    assert request.method == "POST"
    assert str(request.url) == "https://hooks.example.com/segops"
    assert request.headers["X-Segops-Signature"] == f"sha256={expected}"
    assert request.headers["Idempotency-Key"] == ACTION.idempotency_key
    assert request.headers["Content-Type"] == "application/json"
    payload = json.loads(body)
    assert payload["idempotency_key"] == ACTION.idempotency_key
    assert payload["user"] == {"id": "user 1/é", "email": "ada@example.com", "account_id": "acme"}
    assert payload["playbook_name"] == "Problem resolution"
    assert payload["triggered_at"] == "2026-06-15T12:00:00.000Z"
    assert {key: payload[key] for key in PROPERTIES} == PROPERTIES


def test_segment_track_call():
    client = create_client(destination("segment", write_key="SEG_KEY"), environ={"SEG_KEY": "wk-123"})
    request = capture(client)
    assert str(request.url) == "https://api.segment.io/v1/track"
    # The write key is the user name and the password is empty, as Segment documents.
    assert basic_credentials(request) == ("wk-123", "")
    payload = json.loads(request.content)
    assert payload["type"] == "track"
    assert payload["userId"] == "user 1/é"
    assert payload["event"] == "Playbook Triggered"
    assert payload["properties"] == PROPERTIES
    assert payload["messageId"] == ACTION.idempotency_key
    assert payload["timestamp"] == "2026-06-15T12:00:00.000Z"
    assert payload["context"]["library"]["name"] == "segops"


def test_customerio_track_event():
    client = create_client(destination("customerio", site_id="CIO_SITE", api_key="CIO_KEY"),
                           environ={"CIO_SITE": "site-1", "CIO_KEY": "key-1"})
    request = capture(client)
    assert request.url.raw_path == b"/api/v1/customers/user%201%2F%C3%A9/events"
    assert request.url.host == "track.customer.io"
    assert basic_credentials(request) == ("site-1", "key-1")
    payload = json.loads(request.content)
    assert payload == {"name": "Playbook Triggered", "id": ACTION.idempotency_key, "timestamp": T // 1000,
                       "data": PROPERTIES}


def test_braze_campaign_trigger():
    client = create_client(destination("braze", {"rest_endpoint": "https://rest.iad-01.braze.com/"}, api_key="BRAZE"),
                           environ={"BRAZE": "braze-key"})
    request = capture(client)
    assert str(request.url) == "https://rest.iad-01.braze.com/campaigns/trigger/send"
    assert request.headers["Authorization"] == "Bearer braze-key"
    assert json.loads(request.content) == {
        "campaign_id": "4242",
        "recipients": [{"external_user_id": "user 1/é", "trigger_properties": PROPERTIES}],
    }


def test_iterable_workflow_by_email_or_user():
    client = create_client(destination("iterable", api_key="ITERABLE"), environ={"ITERABLE": "it-key"})
    request = capture(client)
    assert str(request.url) == "https://api.iterable.com/api/workflows/triggerWorkflow"
    assert request.headers["Api-Key"] == "it-key"
    assert json.loads(request.content) == {"workflowId": 4242, "email": "ada@example.com", "dataFields": PROPERTIES}

    without_email = capture(client, OutboundAction(**{**ACTION.__dict__, "email": None}))
    payload = json.loads(without_email.content)
    assert payload["userId"] == "user 1/é"
    assert "email" not in payload


def test_slack_message_escapes_markup():
    client = create_client(destination("slack", url="SLACK_URL"),
                           environ={"SLACK_URL": "https://hooks.slack.com/services/T0/B0/xyz"})
    action = OutboundAction(**{**ACTION.__dict__, "channel": "cs_task", "content": "call <them> & help",
                               "account_id": "Acme <b>"})
    request = capture(client, action)
    assert str(request.url) == "https://hooks.slack.com/services/T0/B0/xyz"
    payload = json.loads(request.content)
    assert set(payload) == {"text"}
    assert "call &lt;them&gt; &amp; help" in payload["text"]
    assert "Acme &lt;b&gt;" in payload["text"]
    assert "Problem resolution" in payload["text"]
    assert "<" not in payload["text"]


def test_demo_action_payload():
    client = create_client(destination("demo"), source_url="http://127.0.0.1:8765/", source_write_key="demo")
    request = capture(client, OutboundAction(**{**ACTION.__dict__, "held_out": True}))
    assert str(request.url) == "http://127.0.0.1:8765/v1/actions"
    assert basic_credentials(request) == ("demo", "")
    payload = json.loads(request.content)
    assert payload["held_out"] is True
    assert payload["user_id"] == "user 1/é"
    assert payload["segment"] == "At-Risk"
    assert payload["idempotency_key"] == ACTION.idempotency_key
    assert client.accepts_holdout_notices


@pytest.mark.parametrize("kind, fields, secrets, message", [
    ("segment", None, {"write_key": "UNSET_SEGMENT_KEY"}, "UNSET_SEGMENT_KEY is not set"),
    ("braze", {"rest_endpoint": "https://rest.iad-01.braze.com"}, {}, "api_key_env"),
    ("webhook", {}, {"secret": "UNSET"}, "destinations.webhook.url"),
    ("demo", None, {}, "source.url"),
])
def test_missing_setting_is_named(kind, fields, secrets, message):
    with pytest.raises(DestinationNotConfigured) as raised:
        create_client(destination(kind, fields, **secrets), environ={})
    assert message in str(raised.value)


def test_mask_secret_shapes():
    assert mask_secret(None) == "(not set)"
    assert mask_secret("") == "(not set)"
    assert mask_secret("short") == "****"
    assert mask_secret("abcdefghijklmnop") == "ab****op"
    assert mask_secret("https://hooks.slack.com/services/T0/B0/xyz") == "https://hooks.slack.com/****"


def test_redact_removes_secrets():
    text = "401 for key abcdefghijklmnop at https://hooks.slack.com/services/T0/B0/xyz"
    cleaned = redact(text, ["abcdefghijklmnop", "https://hooks.slack.com/services/T0/B0/xyz", "ab"])
    assert "abcdefghijklmnop" not in cleaned
    assert "T0/B0/xyz" not in cleaned
    assert "ab****op" in cleaned
    assert redact(None, ["x"]) is None


# --- through the dispatcher, with respx standing in for the vendors -------------------------------

VENDOR_CONFIG = {
    "destinations": {
        "braze": {"type": "braze", "rest_endpoint": "https://rest.iad-01.braze.com", "api_key_env": "T_BRAZE"},
        "cio": {"type": "customerio", "site_id_env": "T_CIO_SITE", "api_key_env": "T_CIO_KEY"},
        "cs": {"type": "slack", "url_env": "T_SLACK"},
    },
    "playbooks": {
        "rescue": {
            "segment": "New", "holdout_share": 0.0,
            "steps": [
                {"channel": "email", "destination": "braze", "content": "cmp-1"},
                {"channel": "email", "destination": "cio", "content": "journey-1"},
                {"channel": "cs_task", "destination": "cs", "content": "call them"},
            ],
        },
    },
}
VENDOR_ENV = {"T_BRAZE": "braze-secret-key-0001", "T_CIO_SITE": "site-0001", "T_CIO_KEY": "cio-secret-key-0001",
              "T_SLACK": "https://hooks.slack.com/services/T0/B0/slack-secret-path"}


def test_dispatch_to_vendors_with_respx(cache, messages):
    messages.track("ada", "Signed Up", T - 1000)
    messages.ingest(cache)
    config = parse_config(VENDOR_CONFIG, "vendors.toml")
    refresh(cache, config.settings, T)
    runs.create_run(cache, config.playbooks["rescue"], Target("user", "ada"), operator="t", now=T)

    with respx.mock(assert_all_called=True) as router:
        braze = router.post("https://rest.iad-01.braze.com/campaigns/trigger/send").respond(
            201, json={"dispatch_id": "d-1", "message": "success"})
        cio = router.post("https://track.customer.io/api/v1/customers/ada/events").respond(200, json={})
        slack = router.post("https://hooks.slack.com/services/T0/B0/slack-secret-path").respond(
            500, text="internal error for slack-secret-path")
        report = dispatch_once(cache, config, clock=lambda: T, environ=VENDOR_ENV)

    assert report.sent == 2
    assert report.retried == 1
    assert braze.calls.last.request.headers["Authorization"] == "Bearer braze-secret-key-0001"
    assert json.loads(cio.calls.last.request.content)["name"] == "Playbook Triggered"
    assert slack.call_count == 1
    # Secrets never reach the cache, even when a response echoes them.
    dump = "\n".join(cache.conn.iterdump())
    for secret in VENDOR_ENV.values():
        assert secret not in dump
    assert "slack-secret-path" not in dump
