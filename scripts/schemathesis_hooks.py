"""Schemathesis hooks for scripts/schemathesis.sh (loaded via SCHEMATHESIS_HOOKS).

1. Authentication. Every operation gets the fuzzing user's token
   (SCHEMATHESIS_TOKEN, registered by the script) except those that sign
   devices out (logout, logout-all, revoking a device, a password change):
   those get a
   brand-new device token for every request, so fuzzing them never revokes
   the shared token. (A token given with -H would override both.)
2. Cross-field rules that JSON Schema cannot state are applied to generated
   bodies: POST /api/sync holds at most 64 keys counting `data` and
   `deleted` together, and no key in both. The spec states the rule in
   prose and bounds each part alone (maxProperties / maxItems /
   uniqueItems); a body is only dropped when this rule alone would make the
   server refuse it.
3. Each generated `requestId` is made unique before the call. A client must
   not reuse one for a different request (the spec's 400 says so, and the
   API tests check that refusal); the generator reuses short ids like "0"
   across operations, which a schema cannot forbid. The id keeps its length
   where it can (so 128-byte ids are still sent).
"""

import itertools
import json
import os
import urllib.request
import uuid

import schemathesis

BASE = os.environ["SCHEMATHESIS_BASE_URL"]
# "name:value name:value": the header wrangler's proxy adds for the runtime.
EXTRA = [h.split(":", 1) for h in os.environ.get("SCHEMATHESIS_EXTRA_HEADERS", "").split()]
_counter = itertools.count(1)


def _register() -> str:
    n = next(_counter)
    body = json.dumps(
        {"email": f"fuzz-device-{os.getpid()}-{n}@example.com", "password": "fuzz-password"}
    ).encode()
    req = urllib.request.Request(f"{BASE}/api/auth/register", data=body, method="POST")
    req.add_header("content-type", "application/json")
    # A client address of its own: registrations are rate limited per IP.
    req.add_header("cf-connecting-ip", f"10.99.{(n >> 8) & 0xFF}.{n & 0xFF}")
    for name, value in EXTRA:
        req.add_header(name, value)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)["token"]


@schemathesis.auth(refresh_interval=None).skip_for(
    method="POST", path="/api/auth/logout"
).skip_for(method="POST", path="/api/auth/logout-all").skip_for(
    method="POST", path="/api/auth/password"
).skip_for(method="DELETE", path="/api/devices/{id}")
class SharedUser:
    """The fuzzing user's one device."""

    def get(self, case, context):
        return os.environ["SCHEMATHESIS_TOKEN"]

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schemathesis.auth(refresh_interval=None).apply_to(
    method="POST", path="/api/auth/logout"
).apply_to(method="POST", path="/api/auth/logout-all").apply_to(
    method="POST", path="/api/auth/password"
).apply_to(method="DELETE", path="/api/devices/{id}")
class FreshDevice:
    """A new device (of a new account) for each request that signs out."""

    def get(self, case, context):
        return _register()

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schemathesis.hook
def filter_body(context, body):
    op = context.operation
    if op is None or op.method.upper() != "POST" or not isinstance(body, dict):
        return True
    if op.path == "/api/sync":
        data, deleted = body.get("data", {}), body.get("deleted", [])
        if not isinstance(data, dict) or not isinstance(deleted, list):
            return True
        if not all(isinstance(k, str) for k in deleted):
            return True
        return len(data) + len(deleted) <= 64 and not set(data) & set(deleted)
    return True


@schemathesis.hook
def before_call(context, case, **kwargs):
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("requestId"), str) and body["requestId"]:
        unique = uuid.uuid4().hex
        rid = body["requestId"]
        rid = rid[: -len(unique)] + unique if len(rid) >= len(unique) else unique
        case.body = {**body, "requestId": rid}
