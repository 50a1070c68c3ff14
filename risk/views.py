from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache

from risk import captcha


@never_cache
def captcha_image(request: HttpRequest) -> HttpResponse:
    """The picture of the session's pending captcha (404 when there is none)."""
    svg = captcha.challenge_svg(request.session)
    if svg is None:
        raise Http404
    response = HttpResponse(svg, content_type="image/svg+xml")
    # Our own markup, but still: never run as a document if opened directly.
    response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    response["X-Content-Type-Options"] = "nosniff"
    return response
