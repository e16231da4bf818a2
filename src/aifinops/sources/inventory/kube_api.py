"""The Kubernetes API, through the official client: list nodes, pods and namespaces, then
watch them from the lists' resource versions.

Lists are read page by page (`limit`/`continue`) as raw JSON, so the same row builders serve
the API and `kubectl -o json` dumps. A watch that the server expires (HTTP 410 Gone: the
resource version is too old) is answered by listing again and watching from the new
version; bookmarks move the version forward without events.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aifinops.errors import InputError
from aifinops.sources.inventory.kubernetes import KubeObjects, objects_from

KINDS = ("Node", "Pod", "Namespace")
PAGE = 500


class Expired(Exception):
    """The watch's resource version is too old (410 Gone): list again."""


@dataclass
class Listing:
    objects: KubeObjects
    versions: dict[str, str] = field(default_factory=dict)  # kind -> resourceVersion
    raw: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


class KubeApi:
    def __init__(
        self,
        kubeconfig: str | None = None,
        context: str | None = None,
        *,
        in_cluster: bool = False,
        timeout: float = 30.0,
    ):
        from kubernetes import client, config

        cfg = client.Configuration()
        try:
            if in_cluster:
                config.load_incluster_config(client_configuration=cfg)
            else:
                config.load_kube_config(
                    config_file=kubeconfig, context=context, client_configuration=cfg
                )
        except (config.ConfigException, OSError, TypeError) as error:
            raise InputError(
                f"no usable Kubernetes configuration: {error}",
                where=kubeconfig or ("in-cluster" if in_cluster else "~/.kube/config"),
                hint="give --kubeconfig FILE (and --context), or run inside the cluster",
            ) from error
        cfg.retries = 2
        self.server = cfg.host
        self.timeout = timeout
        self.core = client.CoreV1Api(client.ApiClient(cfg))

    def _list_fn(self, kind: str) -> Callable[..., Any]:
        return {
            "Node": self.core.list_node,
            "Pod": self.core.list_pod_for_all_namespaces,
            "Namespace": self.core.list_namespace,
        }[kind]

    def list(self, kind: str) -> tuple[list[dict[str, Any]], str]:
        """Every object of a kind, page by page, and the list's resource version."""
        from kubernetes.client.exceptions import ApiException

        items: list[dict[str, Any]] = []
        token: str | None = None
        version = ""
        while True:
            kwargs: dict[str, Any] = {"limit": PAGE, "_preload_content": False}
            if token:
                kwargs["_continue"] = token
            try:
                resp = self._list_fn(kind)(_request_timeout=self.timeout, **kwargs)
                doc = json.loads(resp.data)
            except ApiException as error:
                raise InputError(
                    f"listing {kind}s failed: HTTP {error.status} {error.reason}",
                    where=self.server,
                ) from error
            except (OSError, ValueError) as error:
                raise InputError(f"listing {kind}s failed: {error}", where=self.server) from error
            items += [{**item, "kind": kind} for item in doc.get("items") or []]
            meta = doc.get("metadata") or {}
            version = str(meta.get("resourceVersion") or version)
            token = meta.get("continue")
            if not token:
                return items, version

    def list_all(self) -> Listing:
        raw: dict[str, list[dict[str, Any]]] = {}
        versions: dict[str, str] = {}
        for kind in KINDS:
            raw[kind], versions[kind] = self.list(kind)
        every = [item for kind in KINDS for item in raw[kind]]
        objects = objects_from({"kind": "List", "items": every}, self.server)
        return Listing(objects, versions, raw)

    def watch(
        self,
        kind: str,
        version: str,
        on_event: Callable[[str, dict[str, Any]], None],
        seconds: int = 60,
    ) -> str:
        """Stream events after `version` for up to `seconds`; returns the newest version.
        Raises Expired when the server has forgotten `version`."""
        from kubernetes.client.exceptions import ApiException
        from kubernetes.watch.watch import iter_resp_lines

        resp = None
        try:
            resp = self._list_fn(kind)(
                watch=True,
                resource_version=version,
                timeout_seconds=seconds,
                allow_watch_bookmarks=True,
                _preload_content=False,
                _request_timeout=seconds + self.timeout,
            )
            # raw JSON lines: the client's models would reject objects of newer API versions
            for line in iter_resp_lines(resp):
                if not line:
                    continue
                event = json.loads(line)
                kind_of, raw = event.get("type"), event.get("object") or {}
                if kind_of == "ERROR":
                    if raw.get("code") == 410:
                        raise Expired(str(raw.get("message") or raw.get("reason")))
                    raise InputError(
                        f"watching {kind}s: {raw.get('reason')}: {raw.get('message')}",
                        where=self.server,
                    )
                newer = (raw.get("metadata") or {}).get("resourceVersion")
                if kind_of != "BOOKMARK":
                    on_event(str(kind_of), {**raw, "kind": kind})
                if newer:
                    version = str(newer)
        except ApiException as error:
            if error.status == 410:
                raise Expired(str(error.reason)) from error
            raise InputError(
                f"watching {kind}s failed: HTTP {error.status} {error.reason}", where=self.server
            ) from error
        except (OSError, ValueError) as error:
            raise InputError(f"watching {kind}s failed: {error}", where=self.server) from error
        finally:
            if resp is not None:
                resp.close()
                resp.release_conn()
        return version
