"""Payment notification receivers: `/hooks/<provider>/<token>/` (one unguessable URL per credential).

Thin: read at most BODY_MAX + 1 bytes, hand the delivery to `notification_receive` (store raw +
verify, apply enqueued), answer in the provider's format. No sign-in and no CSRF token: the
providers authenticate with their signature or token, checked by the service.
"""
from __future__ import annotations

import logging

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from arbook.models.notifications import BODY_MAX
from arbook.services.notifications import Received, notification_receive

logger = logging.getLogger(__name__)


def _received(request: HttpRequest) -> Received:
    try:
        announced = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        announced = 0
    # Never read more than one byte past the limit: an oversize body is refused unread.
    body = request.read(BODY_MAX + 1) if announced <= BODY_MAX else request.read(min(announced, BODY_MAX))
    return Received(method=request.method or "", content_type=request.content_type or "",
                    headers={k.lower(): v for k, v in request.headers.items()}, body=body,
                    body_size=max(announced, len(body)), remote_addr=request.META.get("REMOTE_ADDR", ""))


@csrf_exempt
@login_not_required
def receive(request: HttpRequest, provider: str, token: str) -> HttpResponse:
    receipt = notification_receive(provider=provider, token=token, received=_received(request))
    reply = receipt.reply
    response = HttpResponse(reply.body, status=reply.status, content_type=reply.content_type)
    # Django would log a 4xx with the path, i.e. with the credential's token: the service has
    # logged it already (by notification id, without the token).
    response._has_been_logged = True
    return response


urlpatterns = [
    path("hooks/<str:provider>/<str:token>/", receive, name="hook_receive"),
    # The same receiver without the trailing slash (some dashboards drop it): answered here, not
    # redirected, since a redirected POST loses its body (APPEND_SLASH would answer 301, or 500
    # under DEBUG). `reverse("hook_receive")` keeps giving the documented form with the slash.
    path("hooks/<str:provider>/<str:token>", receive, name="hook_receive_no_slash"),
]
