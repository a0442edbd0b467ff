"""Latest unit positions for nearest-unit search, behind a small interface: in memory on one node
(:class:`geo.nearest.NearestIndex`, exact haversine), or in Redis with its GEO commands when
several nodes share one Redis, so every node finds units that report to any node.

Redis computes distances on a sphere of radius 6 372 797.56 m, 0.03% more than our WGS-84 mean
radius; results are re-measured with our haversine so both implementations agree.
"""

from __future__ import annotations

from typing import Callable, Protocol, cast

from geo.distance import haversine_m
from geo.nearest import NearestIndex

from .redis_pool import redis_client

GEO_KEY = "dispatch:geo"
SEARCH_RADIUS_KM = 20_000  # the whole Earth: ask for the k nearest, not the ones within a radius


class PositionIndex(Protocol):
    async def update(self, unit_id: str, lat: float, lon: float) -> None: ...
    async def nearest(self, lat: float, lon: float, k: int,
                      accept: Callable[[str], bool]) -> list[tuple[str, float, tuple[float, float]]]: ...
    async def close(self) -> None: ...


class MemoryPositionIndex:
    def __init__(self) -> None:
        self._index = NearestIndex()

    async def update(self, unit_id: str, lat: float, lon: float) -> None:
        self._index.update(unit_id, lat, lon)

    async def nearest(self, lat: float, lon: float, k: int,
                      accept: Callable[[str], bool]) -> list[tuple[str, float, tuple[float, float]]]:
        out = []
        for unit_id, dist in self._index.nearest(lat, lon, k, filter=accept):
            pos = self._index.position(unit_id)
            assert pos is not None
            out.append((unit_id, dist, (pos[0], pos[1])))
        return out

    async def close(self) -> None:
        return None


class RedisPositionIndex:
    def __init__(self, url: str) -> None:
        self._redis = redis_client(url)

    async def update(self, unit_id: str, lat: float, lon: float) -> None:
        await self._redis.geoadd(GEO_KEY, (lon, lat, unit_id))

    async def nearest(self, lat: float, lon: float, k: int,
                      accept: Callable[[str], bool]) -> list[tuple[str, float, tuple[float, float]]]:
        count = k
        while True:
            # decode_responses=True: [[unit id, (lon, lat)], ...]
            found = cast(list[tuple[str, tuple[float, float]]], await self._redis.geosearch(
                GEO_KEY, longitude=lon, latitude=lat, radius=SEARCH_RADIUS_KM, unit="km", sort="ASC", count=count,
                withcoord=True))
            out: list[tuple[str, float, tuple[float, float]]] = []
            for unit_id, (ulon, ulat) in found:
                if accept(unit_id):
                    out.append((unit_id, haversine_m(lat, lon, ulat, ulon), (ulat, ulon)))
            if len(out) >= k or len(found) < count:
                out.sort(key=lambda r: r[1])
                return out[:k]
            count *= 4  # the filter rejected some: look further

    async def close(self) -> None:
        await self._redis.aclose()
