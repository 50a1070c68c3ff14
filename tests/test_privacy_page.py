"""The privacy policy at /privacy/: linked from every page's footer, in both languages, stating
the configured retention period and the cookies the site sets. Structure only; the wording is
the translators'."""

import pytest
from django.urls import reverse

from tests.pages import find_all

pytestmark = pytest.mark.django_db

SECTIONS = {"what", "how-long", "who", "your-rights", "cookies", "contact"}
COOKIES = {"sessionid", "csrftoken", "django_language", "messages", "cv_fp"}


@pytest.mark.parametrize(("accept", "lang"), [("en", "en"), ("zh-CN,zh;q=0.9", "zh-hans")])
def test_policy_renders_in_both_languages(client, settings, accept, lang):
    settings.BUYER_DATA_RETENTION_DAYS = 123
    response = client.get(reverse("orders:privacy"), HTTP_ACCEPT_LANGUAGE=accept)

    assert response.status_code == 200
    [html] = find_all(response.content, "html")
    assert html.attrs["lang"] == lang
    sections = {element.attrs["id"] for element in find_all(response.content, "section")}
    assert sections >= SECTIONS
    cookies = {element.text for element in find_all(response.content, "code")}
    assert cookies == COOKIES
    [how_long] = [s for s in find_all(response.content, "section") if s.attrs["id"] == "how-long"]
    assert "123" in how_long.text


def test_footer_links_the_policy_on_the_home_page(client):
    response = client.get(reverse("shop:home"))
    footer = response.content.decode().split("<footer", 1)[1].split("</footer>", 1)[0]
    links = [a.attrs["href"] for a in find_all(footer, "a")]
    assert reverse("orders:privacy") in links
