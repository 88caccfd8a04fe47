"""Schemathesis hook: signs most generated webhook bodies with the service's secret, so the
fuzzer reaches the JSON, validation and database steps instead of stopping at 401."""

import base64
import hashlib
import hmac
import json
import os

import schemathesis

SECRET = os.environ["SCHEMATHESIS_WEBHOOK_SECRET"].encode()
STANDARD_HEADERS = {"webhook-id", "webhook-timestamp", "webhook-signature", "svix-id", "svix-timestamp", "svix-signature"}


# The shop platforms' endpoints: the header of their base64 signature (same secret here).
PLATFORM_HEADERS = {"/webhooks/shopify": "X-Shopify-Hmac-Sha256", "/webhooks/woocommerce": "X-WC-Webhook-Signature"}


@schemathesis.hook
def before_call(context, case, kwargs):
    path = case.operation.path
    if path != "/webhooks/order_events" and path not in PLATFORM_HEADERS:
        return
    if not isinstance(case.body, (bytes, dict, list, str, int, float, bool)):
        return
    raw = case.body if isinstance(case.body, bytes) else json.dumps(case.body).encode()
    mac = hmac.new(SECRET, raw, hashlib.sha256)
    # Leave one body in four as generated (unsigned or wrongly signed): those must be 401.
    if int(mac.hexdigest()[0], 16) % 4 == 0:
        return
    case.body = raw
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() not in STANDARD_HEADERS}
    if path in PLATFORM_HEADERS:
        headers[PLATFORM_HEADERS[path]] = base64.b64encode(mac.digest()).decode()
    else:
        headers["X-Ecomm-Signature"] = f"sha256={mac.hexdigest()}"
    case.headers = headers
