"""FarPay signs webhooks per Standard Webhooks: the published test vector reproduces."""
from __future__ import annotations

from gateways.farpay import sign_webhook, verify_webhook

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = "1614265330"
BODY = b'{"test": 2432232314}'
SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_published_vector_reproduces():
    assert sign_webhook(SECRET, MSG_ID, TIMESTAMP, BODY) == SIGNATURE


def test_the_vector_verifies_within_its_window_only_and_not_when_anything_changes():
    now = int(TIMESTAMP)
    assert verify_webhook(SECRET, MSG_ID, TIMESTAMP, BODY, f"v1,bogus {SIGNATURE}", now=now + 10)
    assert not verify_webhook(SECRET, MSG_ID, TIMESTAMP, BODY, SIGNATURE, now=now + 301)  # a replay
    assert not verify_webhook(SECRET, MSG_ID, TIMESTAMP, BODY + b" ", SIGNATURE, now=now)
    assert not verify_webhook(SECRET, "msg_other", TIMESTAMP, BODY, SIGNATURE, now=now)
