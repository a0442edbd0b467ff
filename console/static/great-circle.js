/**
 * Distance and direction on the WGS-84 sphere approximation, for a `goto` instruction's card:
 * how far the target is from the phone's own fix and in which direction, plus a `geo:` URI
 * (RFC 5870) that opens the phone's map app (the page needs no map server).
 * Same formulas as `geo/distance.py` on the server.
 */

const EARTH_RADIUS_M = 6371008.8;
const rad = (deg) => (deg * Math.PI) / 180;

/** Great-circle distance in metres (haversine). */
export function haversineM(lat1, lon1, lat2, lon2) {
  const dLat = rad(lat2 - lat1);
  const dLon = rad(lon2 - lon1);
  const a = Math.sin(dLat / 2) ** 2 + Math.cos(rad(lat1)) * Math.cos(rad(lat2)) * Math.sin(dLon / 2) ** 2;
  return 2 * EARTH_RADIUS_M * Math.asin(Math.min(1, Math.sqrt(a)));
}

/** Initial bearing from the first point to the second, degrees clockwise from north, 0..360. */
export function bearingDeg(lat1, lon1, lat2, lon2) {
  const y = Math.sin(rad(lon2 - lon1)) * Math.cos(rad(lat2));
  const x = Math.cos(rad(lat1)) * Math.sin(rad(lat2)) -
    Math.sin(rad(lat1)) * Math.cos(rad(lat2)) * Math.cos(rad(lon2 - lon1));
  return ((Math.atan2(y, x) * 180) / Math.PI + 360) % 360;
}

/** Which of the eight compass points (0 = north, 1 = north-east, ... 7 = north-west). */
export function compassPoint(bearing) {
  return Math.floor((((bearing % 360) + 360) % 360 + 22.5) / 45) % 8;
}

/** `geo:lat,lon?q=lat,lon`: Android's and most phones' map apps open it at the point. */
export function geoUri(lat, lon) {
  const p = `${lat.toFixed(6)},${lon.toFixed(6)}`;
  return `geo:${p}?q=${p}`;
}
