"""Watch one directory's ScimUsers with the official Kubernetes Python client.

Usage: python watch_users.py <namespace> <directory>
Prints one JSON line per change:
{"event": "created" | "modified" | "deleted", "id": ..., "userName": ..., "active": ...}
"""
import json
import sys

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

GROUP, VERSION, PLURAL = "kubescim.io", "v1alpha1", "scimusers"


def emit(event, user):
    status = user.get("status") or {}
    line = {"event": event, "id": user["metadata"]["name"],
            "userName": status.get("userName"), "active": status.get("active")}
    print(json.dumps(line), flush=True)


def main(namespace, directory):
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()  # KUBECONFIG or ~/.kube/config
    api = client.CustomObjectsApi()
    selector = f"kubescim.io/directory={directory}"
    known = {}  # name -> the last version seen of the ScimUser

    def relist():
        """Lists the users and reports what changed since `known`; returns the resourceVersion."""
        listing = api.list_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, label_selector=selector)
        current = {u["metadata"]["name"]: u for u in listing["items"]}
        for name, user in current.items():
            if name not in known:
                emit("created", user)
            elif user["metadata"]["resourceVersion"] != known[name]["metadata"]["resourceVersion"]:
                emit("modified", user)
        # Deleted while no watch was open: no DELETED event will ever come for these.
        for name in known.keys() - current.keys():
            emit("deleted", known[name])
        known.clear()
        known.update(current)
        return listing["metadata"]["resourceVersion"]

    resource_version = relist()
    while True:
        try:
            # The server ends each watch after timeout_seconds; the next one resumes from the last
            # resourceVersion seen, so nothing is missed or repeated.
            for event in watch.Watch().stream(
                    api.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL,
                    label_selector=selector, resource_version=resource_version,
                    allow_watch_bookmarks=True, timeout_seconds=300):
                user, kind = event["object"], event["type"]
                resource_version = user["metadata"]["resourceVersion"]
                if kind == "BOOKMARK":
                    continue
                name = user["metadata"]["name"]
                if kind == "DELETED":
                    known.pop(name, None)
                    emit("deleted", user)
                else:  # ADDED or MODIFIED
                    emit("created" if name not in known else "modified", user)
                    known[name] = user
        except ApiException as e:
            # 410 Gone: the resourceVersion is older than the apiserver keeps; list again and diff.
            if e.status != 410:
                raise
            print("watch_users: resourceVersion expired, listing again",
                  file=sys.stderr, flush=True)
            resource_version = relist()


if __name__ == "__main__":
    main(*sys.argv[1:3])
