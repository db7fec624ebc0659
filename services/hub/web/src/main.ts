// The live fleet map: MapLibre for the map, deck.gl for cars, stations, bookings and plans.
import { MapboxOverlay } from "@deck.gl/mapbox";
import { LineLayer, ScatterplotLayer, TextLayer } from "@deck.gl/layers";
import * as maplibregl from "maplibre-gl";
import "maplibre-gl/dist/maplibre-gl.css";
// MapLibre parses GeoJSON (the grid) in a worker: served from our assets, not guessed.
import workerUrl from "maplibre-gl/dist/maplibre-gl-worker.mjs?url";
import "./style.css";
import { Feed, type Status } from "./connection";
import { gridLines } from "./grid";
import {
  BOOKING,
  FleetModel,
  batteryColor,
  isCritical,
  stationColor,
  type Booking,
  type Car,
  type Frame,
  type Plan,
  type Station,
} from "./model";

maplibregl.setWorkerUrl(workerUrl);

const TOKEN_KEY = "greenlane.token";
const MANHATTAN: [number, number] = [-73.965, 40.78];
const PLAIN_STYLE: maplibregl.StyleSpecification = {
  version: 8,
  sources: {},
  layers: [{ id: "background", type: "background", paint: { "background-color": "#0b1220" } }],
};

interface HubConfig {
  map_style_url: string | null;
  frame_ms: number;
  online_seconds: number;
}

type CarRow = [string, Car];
type StationRow = [string, Station];
type BookingRow = { id: string; booking: Booking; from: [number, number]; to: [number, number] };
type SetpointRow = { id: string; position: [number, number]; text: string };

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;

// ------------------------------------------------------------------ the token

function askToken(message?: string): Promise<string> {
  const dialog = $<HTMLDialogElement>("login");
  const input = $<HTMLInputElement>("login-token");
  if (message) dialog.querySelector(".hint")!.textContent = message;
  return new Promise((resolve) => {
    $<HTMLFormElement>("login-form").onsubmit = () => {
      sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      resolve(input.value.trim());
    };
    dialog.showModal();
  });
}

/** The token from the link's #token=… (then dropped from the address bar), else the tab's. */
async function takeToken(): Promise<string> {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const given = fragment.get("token");
  if (given) {
    sessionStorage.setItem(TOKEN_KEY, given);
    history.replaceState(null, "", location.pathname + location.search);
    return given;
  }
  return sessionStorage.getItem(TOKEN_KEY) ?? askToken();
}

// ------------------------------------------------------------------ formatting

const fmt = (n: number | null | undefined, digits = 0): string =>
  n === null || n === undefined ? "–" : n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });

function ago(ms: number): string {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 90 ? `${s} s ago` : `${Math.round(s / 60)} min ago`;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function sparkline(points: [number, number][], width = 260, height = 60): string {
  if (points.length < 2) return `<p class="muted">battery history builds up as the car reports</p>`;
  const t0 = points[0][0];
  const t1 = points[points.length - 1][0];
  const x = (t: number) => ((t - t0) / Math.max(t1 - t0, 1)) * (width - 4) + 2;
  const y = (b: number) => height - 2 - (b / 100) * (height - 4);
  const path = points.map(([t, b], i) => `${i ? "L" : "M"}${x(t).toFixed(1)},${y(b).toFixed(1)}`).join("");
  return `<svg class="spark" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}">
    <line x1="0" x2="${width}" y1="${y(20)}" y2="${y(20)}" class="band"/>
    <path d="${path}"/></svg>
    <p class="muted">battery over the last ${Math.max(1, Math.round((t1 - t0) / 60000))} min (line: 20 %)</p>`;
}

function planBars(plan: Plan): string {
  const max = Math.max(1, ...plan.power_kw);
  const bars = plan.power_kw
    .slice(0, 96)
    .map((kw) => `<i style="height:${Math.round((kw / max) * 100)}%" title="${fmt(kw, 1)} kW"></i>`)
    .join("");
  return `<div class="bars">${bars}</div>`;
}

// ------------------------------------------------------------------ the page

async function main(): Promise<void> {
  const tokenTaken = takeToken(); // first: the fragment leaves the address bar at once
  const config = (await (await fetch("api/config")).json()) as HubConfig;
  let token = await tokenTaken;
  const model = new FleetModel();
  const styled = Boolean(config.map_style_url);
  const map = new maplibregl.Map({
    container: "map",
    style: config.map_style_url ?? PLAIN_STYLE,
    center: MANHATTAN,
    zoom: 11.6,
    attributionControl: false,
    maxPitch: 0,
    fadeDuration: 0,
  });
  map.addControl(new maplibregl.ScaleControl({ maxWidth: 160, unit: "metric" }), "bottom-left");
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "top-left");
  let gridStep = 0;
  const drawGrid = () => {
    if (styled) return;
    const b = map.getBounds();
    const { step, lines } = gridLines(b.getWest(), b.getSouth(), b.getEast(), b.getNorth());
    gridStep = step;
    const source = map.getSource("grid") as maplibregl.GeoJSONSource | undefined;
    if (source) source.setData(lines as unknown as GeoJSON.FeatureCollection);
    else {
      map.addSource("grid", { type: "geojson", data: lines as unknown as GeoJSON.FeatureCollection });
      map.addLayer({ id: "grid", type: "line", source: "grid", paint: { "line-color": "#22304a", "line-width": 1 } });
    }
  };
  map.on("load", drawGrid);
  map.on("moveend", drawGrid);
  map.on("mousemove", (e: maplibregl.MapMouseEvent) => {
    $("cursor").textContent = `${e.lngLat.lat.toFixed(5)}°, ${e.lngLat.lng.toFixed(5)}°` + (gridStep ? `  · grid ${gridStep}°` : "");
  });

  let selected: string | null = null;
  let selectedHistory: [number, number][] = [];
  const overlay = new MapboxOverlay({
    // Its own canvas over the map's: deck.gl 9.4 interleaved in MapLibre 6's context
    // fails ("reading 'height'" on every frame).
    interleaved: false,
    layers: [],
    getTooltip: ({ object, layer }) => {
      if (!object || !layer) return null;
      if (layer.id === "cars") {
        const [id, car] = object as CarRow;
        const heading = car.heading === undefined ? "–" : `${car.heading}°`;
        return {
          text: `${id}\nbattery ${fmt(car.battery, 1)} %\nspeed ${fmt(car.velocity, 0)} km/h · heading ${heading}` +
            (car.station_id ? `\nplugged in at ${car.station_id}` : "") + `\n${ago(car.timestamp)}`,
        };
      }
      if (layer.id === "bookings") {
        const { id, booking } = object as BookingRow;
        return { text: `booking ${id}\n${booking.car_id} → ${booking.station_id}\nexpires ${new Date(booking.expires_at).toLocaleTimeString()}` };
      }
      if (layer.id === "stations") {
        const [id, s] = object as StationRow;
        return { text: `${s.name} (${id})\n${s.free} of ${s.capacity} connectors free\n${s.booked} booked · ${s.plugged} plugged in · ${fmt(s.power_kw)} kW` };
      }
      return null;
    },
    onClick: ({ object, layer }) => {
      if (layer?.id === "cars" && object) void select((object as CarRow)[0], false);
    },
  });
  map.addControl(overlay as unknown as maplibregl.IControl);

  // Layers are rebuilt at most once per animation frame, after the model changed.
  let drawnVersion = -1;
  let scheduled = false;
  const counts = { cars: 0, stations: 0, bookingLines: 0, setpoints: 0 };
  const render = () => {
    scheduled = false;
    if (drawnVersion === model.version) return;
    drawnVersion = model.version;
    const now = Date.now();
    const cars: CarRow[] = Array.from(model.cars);
    const stations: StationRow[] = Array.from(model.stations);
    const lines: BookingRow[] = [];
    for (const [id, booking] of model.bookings) {
      const car = model.cars.get(booking.car_id);
      const station = model.stations.get(booking.station_id);
      if (car && station) lines.push({ id, booking, from: [car.lon, car.lat], to: [station.lon, station.lat] });
    }
    const setpoints: SetpointRow[] = [];
    for (const [id, car] of model.cars) {
      const kw = model.setpoint(id, now);
      if (kw !== undefined) setpoints.push({ id, position: [car.lon, car.lat], text: `${fmt(kw, 1)} kW` });
    }
    Object.assign(counts, { cars: cars.length, stations: stations.length, bookingLines: lines.length, setpoints: setpoints.length });
    const chosen = selected ? model.cars.get(selected) : undefined;
    overlay.setProps({
      layers: [
        new ScatterplotLayer<StationRow>({
          id: "stations",
          data: stations,
          getPosition: (d) => [d[1].lon, d[1].lat],
          getRadius: (d) => 5 + 2.2 * Math.sqrt(d[1].capacity),
          radiusUnits: "pixels",
          getFillColor: (d) => stationColor(d[1]),
          getLineColor: [226, 232, 240, 255],
          stroked: true,
          lineWidthMinPixels: 1.5,
          pickable: true,
        }),
        new LineLayer<BookingRow>({
          id: "bookings",
          data: lines,
          getSourcePosition: (d) => d.from,
          getTargetPosition: (d) => d.to,
          getColor: BOOKING,
          getWidth: 2.5,
          widthUnits: "pixels",
          pickable: true,
        }),
        new ScatterplotLayer<CarRow>({
          id: "cars",
          data: cars,
          getPosition: (d) => [d[1].lon, d[1].lat],
          getRadius: (d) => (isCritical(d[1].battery) ? 6 : 4),
          radiusUnits: "pixels",
          getFillColor: (d) => batteryColor(d[1].battery),
          getLineColor: (d) => (isCritical(d[1].battery) ? [255, 255, 255, 255] : d[1].station_id ? [34, 211, 238, 255] : [0, 0, 0, 0]),
          stroked: true,
          lineWidthMinPixels: 1.5,
          pickable: true,
        }),
        new TextLayer<SetpointRow>({
          id: "setpoints",
          data: setpoints,
          getPosition: (d) => d.position,
          getText: (d) => d.text,
          getSize: 12,
          getColor: [34, 211, 238, 255],
          getPixelOffset: [0, -14],
          fontFamily: "sans-serif",
        }),
        new ScatterplotLayer<Car>({
          id: "selected",
          data: chosen ? [chosen] : [],
          getPosition: (d) => [d.lon, d.lat],
          getRadius: 11,
          radiusUnits: "pixels",
          filled: false,
          stroked: true,
          getLineColor: [255, 255, 255, 255],
          lineWidthMinPixels: 2,
        }),
      ],
    });
    drawPanel();
    if (selected) drawCar();
  };
  const schedule = () => {
    if (!scheduled) {
      scheduled = true;
      requestAnimationFrame(render);
    }
  };

  // ---------------------------------------------------------------- panel

  const shown = new Map<string, string>();
  const drawPanel = () => {
    const s = model.stats;
    const values: Record<string, string> = {
      cars_online: fmt(s.cars_online),
      low_battery: fmt(s.low_battery),
      critical_battery: fmt(s.critical_battery),
      active_bookings: fmt(s.active_bookings),
      no_capacity_10min: fmt(s.no_capacity_10min),
      free_connectors: fmt(s.free_connectors),
      energy_kwh_today: s.energy_kwh_today == null ? "–" : `${fmt(s.energy_kwh_today, 1)} kWh`,
      cost_today: s.cost_today == null ? "–" : `$${fmt(s.cost_today, 2)}`,
      events_per_s: fmt(s.events_per_s, 0),
    };
    for (const [key, text] of Object.entries(values)) {
      if (shown.get(key) !== text) {
        shown.set(key, text);
        $(`f-${key}`).textContent = text;
      }
    }
  };

  const drawCar = () => {
    const section = $("car");
    if (!selected) {
      section.hidden = true;
      return;
    }
    const car = model.cars.get(selected);
    section.hidden = false;
    if (!car) {
      section.innerHTML = `<h2>${escapeHtml(selected)}</h2><p class="muted">not on the map</p>`;
      return;
    }
    const last = selectedHistory[selectedHistory.length - 1];
    if (!last || car.timestamp - last[0] >= 5000) selectedHistory.push([car.timestamp, car.battery]);
    const booking = model.bookingOf(selected);
    const plan = model.plans.get(selected);
    const station = booking ? model.stations.get(booking[1].station_id) : undefined;
    const kw = model.setpoint(selected, Date.now());
    section.innerHTML = `
      <h2>${escapeHtml(selected)} <button id="car-close" title="close">×</button></h2>
      <dl class="state">
        <div><dt>battery</dt><dd>${fmt(car.battery, 1)} %</dd></div>
        <div><dt>speed</dt><dd>${fmt(car.velocity)} km/h</dd></div>
        <div><dt>heading</dt><dd>${car.heading === undefined ? "–" : `${car.heading}°`}</dd></div>
        <div><dt>position</dt><dd>${car.lat.toFixed(5)}, ${car.lon.toFixed(5)}</dd></div>
        <div><dt>plugged in</dt><dd>${car.station_id ? escapeHtml(car.station_id) : "no"}${kw !== undefined ? ` · setpoint ${fmt(kw, 1)} kW` : ""}</dd></div>
        <div><dt>last status</dt><dd>${ago(car.timestamp)}</dd></div>
      </dl>
      ${sparkline(selectedHistory)}
      <h3>booking</h3>
      ${booking ? `<p>${escapeHtml(booking[0])} at ${escapeHtml(station?.name ?? booking[1].station_id)}, expires ${new Date(booking[1].expires_at).toLocaleTimeString()}</p>` : `<p class="muted">none</p>`}
      <h3>plan</h3>
      ${plan ? `<p>${plan.feasible ? "feasible" : "<b>not feasible</b>"} · ${fmt(plan.expected_kwh, 1)} kWh for $${fmt(plan.expected_cost, 2)}${plan.shortfall_kwh ? ` · short by ${fmt(plan.shortfall_kwh, 1)} kWh` : ""}${plan.reason ? ` · ${escapeHtml(plan.reason)}` : ""}</p>${planBars(plan)}<p class="muted">${plan.slot_minutes ?? 15}-minute slots from ${new Date(plan.start).toLocaleTimeString()}</p>` : `<p class="muted">none</p>`}`;
    $("car-close").onclick = () => {
      selected = null;
      drawnVersion = -1;
      schedule();
    };
  };

  const select = async (carId: string, fly: boolean) => {
    selected = carId;
    selectedHistory = [];
    const car = model.cars.get(carId);
    if (fly && car) map.flyTo({ center: [car.lon, car.lat], zoom: Math.max(map.getZoom(), 14) });
    try {
      const answer = await fetch(`api/cars/${encodeURIComponent(carId)}`, { headers: { Authorization: `Bearer ${token}` } });
      if (answer.ok) {
        const detail = (await answer.json()) as { history: [number, number][] };
        if (selected === carId) selectedHistory = detail.history;
      }
    } catch {
      // the live frames still draw the car; its history starts now
    }
    drawnVersion = -1;
    schedule();
  };

  $<HTMLFormElement>("search").onsubmit = (event) => {
    event.preventDefault();
    const wanted = $<HTMLInputElement>("search-input").value.trim();
    if (!wanted) return;
    let found = model.cars.has(wanted) ? wanted : undefined;
    if (!found) for (const id of model.cars.keys()) if (id.includes(wanted)) { found = id; break; }
    const input = $<HTMLInputElement>("search-input");
    input.setCustomValidity(found ? "" : `no car matches ${wanted}`);
    input.reportValidity();
    if (found) void select(found, true);
  };

  // ---------------------------------------------------------------- feed

  let fitted = false;
  const status = $("status");
  const setStatus = (state: Status, detail?: string) => {
    status.className = `status ${state}`;
    status.textContent = state === "live" ? "live" : detail ?? state;
    if (state === "unauthorized") {
      sessionStorage.removeItem(TOKEN_KEY);
      feed.stop();
      void askToken("That token was refused; try another.").then((t) => {
        token = t;
        feed = newFeed();
        feed.start();
      });
    }
  };
  const newFeed = () =>
    new Feed({
      token,
      position: () => ({ seq: model.seq, epoch: model.epoch }),
      onStatus: setStatus,
      onFrame: (frame: Frame) => {
        const ok = model.apply(frame);
        if (ok && frame.type === "snapshot" && !fitted && (model.cars.size || model.stations.size)) {
          fitted = true;
          const bounds = new maplibregl.LngLatBounds();
          for (const c of model.cars.values()) bounds.extend([c.lon, c.lat]);
          for (const s of model.stations.values()) bounds.extend([s.lon, s.lat]);
          map.fitBounds(bounds, { padding: 40, duration: 0, maxZoom: 14 });
        }
        schedule();
        return ok;
      },
    });
  let feed = newFeed();
  feed.start();

  // For browser tests and the benchmark: the page's own view of what it shows.
  const w = window as unknown as Record<string, unknown>;
  w.__greenlane = {
    model,
    map,
    overlay,
    counts,
    get feed() {
      return feed;
    },
    statusText: () => status.textContent,
    select: (id: string) => select(id, true),
    /** Frames drawn per second while the camera pans without stop for `ms`. */
    measureFps: (ms: number) =>
      new Promise<number>((resolve) => {
        let frames = 0;
        const onRender = () => (frames += 1);
        map.on("render", onRender);
        const started = performance.now();
        const step = () => {
          const elapsed = performance.now() - started;
          if (elapsed >= ms) {
            map.off("render", onRender);
            resolve((frames * 1000) / elapsed);
            return;
          }
          map.panBy([2, 1], { duration: 0 });
          requestAnimationFrame(step);
        };
        requestAnimationFrame(step);
      }),
  };
}

void main();
