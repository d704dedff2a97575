"""The admin's static files are served by the app itself (whitenoise), without a web server in front."""

from __future__ import annotations


def test_admin_css_is_served_by_the_app(client):
    # GIVEN the app's middleware (whitenoise) and the test settings (no collectstatic ran)
    # WHEN the admin's stylesheet is asked for
    response = client.get("/static/admin/css/base.css")
    # THEN it is served
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/css")
    assert b"".join(response.streaming_content if response.streaming else [response.content])
