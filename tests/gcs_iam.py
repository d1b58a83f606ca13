"""Cloud Storage's IAM, as the GCS test double enforces it: which permission each JSON API request
needs, which permissions each predefined role grants, and the 403 and 404 bodies Cloud Storage sends.

gcp-storage-emulator checks nothing, so a store that reads bucket metadata works on it and fails on
Google (``storage.buckets.get`` is in no object role). ``BucketIam`` makes the proxy in
``tests.gcs_preconditions`` answer like Cloud Storage for one caller holding the roles granted to it
on each bucket. Role contents are Google's (cloud.google.com/storage/docs/access-control/iam-roles),
reduced to the bucket and object permissions; a request the table does not model is refused with 501
so no test passes on behaviour nobody checked.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from urllib.parse import unquote

OBJECT_READ = frozenset({"storage.objects.get", "storage.objects.list"})
OBJECT_USE = OBJECT_READ | {
    "storage.objects.create",
    "storage.objects.delete",
    "storage.objects.restore",
    "storage.objects.update",
}
BUCKET_ALL = frozenset(
    f"storage.buckets.{verb}" for verb in ("create", "delete", "get", "getIamPolicy", "list", "setIamPolicy", "update")
)
ROLES: dict[str, frozenset[str]] = {
    "roles/storage.objectViewer": OBJECT_READ,
    "roles/storage.objectCreator": frozenset({"storage.objects.create"}),
    "roles/storage.objectUser": frozenset(OBJECT_USE),
    "roles/storage.objectAdmin": frozenset(
        OBJECT_USE | {"storage.objects.getIamPolicy", "storage.objects.setIamPolicy"}
    ),
    "roles/storage.legacyBucketReader": frozenset({"storage.buckets.get", "storage.objects.list"}),
    "roles/storage.legacyBucketWriter": frozenset(
        {"storage.buckets.get", "storage.objects.list", "storage.objects.create", "storage.objects.delete"}
    ),
    "roles/storage.admin": BUCKET_ALL | OBJECT_USE | {"storage.objects.getIamPolicy", "storage.objects.setIamPolicy"},
}


@dataclass(frozen=True, slots=True)
class Target:
    """What one request addresses: the bucket, the object (None for the bucket or a listing), and
    the permission asked for (None: a request the double does not model)."""

    bucket: str | None
    name: str | None
    permission: str | None


def target(method: str, path: str, query: dict[str, list[str]], upload_name: str | None) -> Target:
    """The bucket, object and permission of a JSON API request (``path`` without its query)."""
    parts = [unquote(p) for p in path.strip("/").split("/")]
    if parts[:2] == ["download", "storage"]:
        parts = parts[1:]
    if parts[:2] == ["upload", "storage"]:  # /upload/storage/v1/b/BUCKET/o
        resumed = "upload_id" in query  # a session opened by an authorized POST
        if len(parts) == 6 and parts[2:4] == ["v1", "b"] and parts[5] == "o" and (method == "POST" or resumed):
            return Target(parts[4], upload_name, "session" if resumed else "storage.objects.create")
        return Target(None, None, None)
    if parts[:2] != ["storage", "v1"] or parts[2:3] != ["b"]:
        return Target(None, None, None)
    rest = parts[3:]
    if not rest:
        return Target(None, None, {"GET": "storage.buckets.list", "POST": "storage.buckets.create"}.get(method))
    if len(rest) == 1:
        verbs = {"GET": "get", "PATCH": "update", "PUT": "update", "DELETE": "delete"}
        verb = verbs.get(method)
        return Target(rest[0], None, f"storage.buckets.{verb}" if verb else None)
    if rest[1] != "o":
        return Target(rest[0], None, None)  # iam, notificationConfigs, ...: not modeled
    if len(rest) == 2:
        return Target(rest[0], None, "storage.objects.list" if method == "GET" else None)
    verbs = {"GET": "get", "PATCH": "update", "PUT": "update", "DELETE": "delete"}
    verb = verbs.get(method)
    return Target(rest[0], "/".join(rest[2:]), f"storage.objects.{verb}" if verb else None)


@dataclass
class BucketIam:
    """The roles granted on each bucket, and who is calling (every request comes from ``caller``)."""

    caller: str
    grants: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    denied: list[tuple[str, str]] = field(default_factory=list)  # (permission, bucket/object)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def grant(self, bucket: str, member: str, role: str) -> None:
        if role not in ROLES:
            raise ValueError(f"the double does not know {role}; add its permissions to ROLES")
        with self._lock:
            self.grants.setdefault(bucket, {}).setdefault(member, set()).add(role)

    def permissions(self, bucket: str) -> frozenset[str]:
        with self._lock:
            roles = self.grants.get(bucket, {}).get(self.caller, set())
            return frozenset().union(*(ROLES[r] for r in roles))

    def missing(self, bucket: str, name: str | None, needed: list[str]) -> str | None:
        """The first of ``needed`` the caller lacks on ``bucket`` (recorded), or None."""
        held = self.permissions(bucket)
        for permission in needed:
            if permission not in held:
                with self._lock:
                    self.denied.append((permission, f"{bucket}/{name}" if name else bucket))
                return permission
        return None


def forbidden(caller: str, permission: str, bucket: str, name: str | None) -> dict[str, object]:
    """The 403 body Cloud Storage sends when ``caller`` lacks ``permission``."""
    account = caller.split(":", 1)[-1]
    resource = f"the Google Cloud Storage object {bucket}/{name}" if name else "the Google Cloud Storage bucket"
    message = (
        f"{account} does not have {permission} access to {resource}. "
        f"Permission '{permission}' denied on resource (or it may not exist)."
    )
    return {
        "error": {
            "code": 403,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": "forbidden"}],
        }
    }


def not_found(bucket: str, name: str | None, *, bucket_exists: bool) -> dict[str, object]:
    """The 404 body Cloud Storage sends for a missing object or a missing bucket."""
    message = f"No such object: {bucket}/{name}" if bucket_exists and name else "The specified bucket does not exist."
    return {
        "error": {
            "code": 404,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": "notFound"}],
        }
    }
