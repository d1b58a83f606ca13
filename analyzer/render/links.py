"""Links into the Google Cloud Console for a service or revision."""

from __future__ import annotations

from urllib.parse import quote

CONSOLE = "https://console.cloud.google.com/run/detail"


def service_url(project: str, region: str, service: str, page: str = "revisions") -> str:
    return f"{CONSOLE}/{quote(region, safe='')}/{quote(service, safe='')}/{page}?project={quote(project, safe='')}"


def revision_url(project: str, region: str, service: str, revision: str) -> str:
    """The service's revisions page with the revision selected (the Console's own deep link)."""
    return f"{service_url(project, region, service)}&revision={quote(revision, safe='')}"
