"""Who may use the ops pages and their JSON: active staff. Everyone else gets a clear answer, never an empty page
or a redirect loop: anonymous visitors the admin login, logged-in non-staff a 403 page, scripts a 403 in JSON."""

from __future__ import annotations

from functools import wraps
from urllib.parse import urlencode

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, JsonResponse
from django.shortcuts import render

LOGIN_URL = "/admin/login/"
STAFF_ONLY = "staff only: log in at /admin/login/ with a staff account"


def _is_staff(request: HttpRequest) -> bool:
    return request.user.is_active and request.user.is_staff


def staff_page(view):
    """An HTML page for staff. Anonymous: the admin login, back here after. Logged in without staff status: 403
    with a page that says why and links to the login for another account (the admin's own redirect would land
    on its login form again, which is the "empty page" the issue saw)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if _is_staff(request):
            return view(request, *args, **kwargs)
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), LOGIN_URL)
        login_url = f"{LOGIN_URL}?{urlencode({'next': request.get_full_path()})}"
        return render(request, "ops/refused.html", {"nav": "", "login_url": login_url}, status=403)

    return wrapper


def staff_json(view):
    """403 in JSON for anyone but active staff: a script or fetch() gets an answer, not a login page."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not _is_staff(request):
            return JsonResponse({"error": STAFF_ONLY}, status=403)
        return view(request, *args, **kwargs)

    return wrapper
