/**
 * WGS-84 <-> GCJ-02, the shifted datum Chinese web map tiles (AMap/Gaode,
 * Tencent, Google China) are drawn in. The same transform as the server's
 * `geo/gcj02.py`: the widely published reimplementation (Krasovsky 1940
 * ellipsoid, a = 6 378 245 m, e^2 = 0.00669342162296594323), applied only
 * inside the bounding rectangle lon 72.004..137.8347, lat 0.8293..55.8271
 * (edges included); outside it positions are returned unchanged.
 *
 * Everything here is `(lat, lon)` in decimal degrees. The server stores
 * WGS-84 only: the console converts for display when `map.tile_crs` is
 * "gcj02", and converts a point picked on such a map back with the iterative
 * inverse before sending it.
 */

const A = 6378245.0;
const EE = 0.00669342162296594323;
const LON_MIN = 72.004;
const LON_MAX = 137.8347;
const LAT_MIN = 0.8293;
const LAT_MAX = 55.8271;
const INVERSE_TOL_DEG = 1e-10;
const INVERSE_MAX_ITER = 30;

/** Whether GCJ-02 applies at this position (the published rectangle, not the border). */
export function inChinaBox(lat, lon) {
  return lon >= LON_MIN && lon <= LON_MAX && lat >= LAT_MIN && lat <= LAT_MAX;
}

function dLatOf(x, y) {
  let ret = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * Math.sqrt(Math.abs(x));
  ret += (20.0 * Math.sin(6.0 * x * Math.PI) + 20.0 * Math.sin(2.0 * x * Math.PI)) * 2.0 / 3.0;
  ret += (20.0 * Math.sin(y * Math.PI) + 40.0 * Math.sin(y / 3.0 * Math.PI)) * 2.0 / 3.0;
  ret += (160.0 * Math.sin(y / 12.0 * Math.PI) + 320.0 * Math.sin(y * Math.PI / 30.0)) * 2.0 / 3.0;
  return ret;
}

function dLonOf(x, y) {
  let ret = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * Math.sqrt(Math.abs(x));
  ret += (20.0 * Math.sin(6.0 * x * Math.PI) + 20.0 * Math.sin(2.0 * x * Math.PI)) * 2.0 / 3.0;
  ret += (20.0 * Math.sin(x * Math.PI) + 40.0 * Math.sin(x / 3.0 * Math.PI)) * 2.0 / 3.0;
  ret += (150.0 * Math.sin(x / 12.0 * Math.PI) + 300.0 * Math.sin(x / 30.0 * Math.PI)) * 2.0 / 3.0;
  return ret;
}

/** @returns {[number, number]} GCJ-02 [lat, lon] of a WGS-84 position; unchanged outside the box */
export function wgs84ToGcj02(lat, lon) {
  if (!inChinaBox(lat, lon)) return [lat, lon];
  let dLat = dLatOf(lon - 105.0, lat - 35.0);
  let dLon = dLonOf(lon - 105.0, lat - 35.0);
  const radLat = (lat / 180.0) * Math.PI;
  const sin = Math.sin(radLat);
  const magic = 1.0 - EE * sin * sin;
  const sqrtMagic = Math.sqrt(magic);
  dLat = (dLat * 180.0) / (((A * (1.0 - EE)) / (magic * sqrtMagic)) * Math.PI);
  dLon = (dLon * 180.0) / ((A / sqrtMagic) * Math.cos(radLat) * Math.PI);
  return [lat + dLat, lon + dLon];
}

/**
 * WGS-84 [lat, lon] of a GCJ-02 position, by iterating the forward transform
 * (w <- w + (g - f(w)); a few steps reach 1e-10 deg); unchanged outside the box.
 * @returns {[number, number]}
 */
export function gcj02ToWgs84(lat, lon) {
  if (!inChinaBox(lat, lon)) return [lat, lon];
  let wLat = lat;
  let wLon = lon;
  for (let i = 0; i < INVERSE_MAX_ITER; i += 1) {
    const [gLat, gLon] = wgs84ToGcj02(wLat, wLon);
    const eLat = lat - gLat;
    const eLon = lon - gLon;
    wLat += eLat;
    wLon += eLon;
    if (Math.abs(eLat) < INVERSE_TOL_DEG && Math.abs(eLon) < INVERSE_TOL_DEG) break;
  }
  return [wLat, wLon];
}

/**
 * The display projection of a map whose tiles are in `crs`.
 * @param {string | undefined} crs "wgs84" (default) or "gcj02"
 * @returns {{toDisplay: (lat: number, lon: number) => [number, number],
 *   fromDisplay: (lat: number, lon: number) => [number, number]}}
 */
export function datum(crs) {
  if (crs === 'gcj02') return { toDisplay: wgs84ToGcj02, fromDisplay: gcj02ToWgs84 };
  return { toDisplay: (lat, lon) => [lat, lon], fromDisplay: (lat, lon) => [lat, lon] };
}
