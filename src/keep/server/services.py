"""Typed application keys and the per-app state they hold."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from keep.server.metrics import Metrics
from keep.server.settings import Settings
from keep.server.storage.metadata import MetadataStore
from keep.server.storage.objects import ObjectStore


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    metadata: MetadataStore
    objects: ObjectStore
    metrics: Metrics
    secret: bytes
    clock: Callable[[], int]
    random: Callable[[int], bytes]


SETTINGS = web.AppKey("settings", Settings)
SERVICES = web.AppKey("services", Services)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]
