"""Links into the Google Cloud Console for a service or revision."""

from __future__ import annotations

from urllib.parse import quote

CONSOLE = "https://console.cloud.google.com/run/detail"
CONSOLE_RUN = "https://console.cloud.google.com/run"


def service_url(project: str, region: str, service: str, page: str = "revisions") -> str:
    """The service's page; the project's Cloud Run services when the region or service is unknown (a
    series read without ``location``), never a link with an empty path segment."""
    if not region or not service:
        return f"{CONSOLE_RUN}?project={quote(project, safe='')}"
    return f"{CONSOLE}/{quote(region, safe='')}/{quote(service, safe='')}/{page}?project={quote(project, safe='')}"


def revision_url(project: str, region: str, service: str, revision: str) -> str:
    """The service's revisions page with the revision selected (the Console's own deep link)."""
    if not region or not service or not revision:
        return service_url(project, region, service)
    return f"{service_url(project, region, service)}&revision={quote(revision, safe='')}"
