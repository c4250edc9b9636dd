"""`/`: the overview. Says honestly how fresh the data is, and what to do when there is none."""
from __future__ import annotations

from django.shortcuts import render

from arbook.selectors.overview import overview_context


def overview(request):
    return render(request, "arbook/overview.html", overview_context(user=request.user))
