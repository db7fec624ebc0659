// The dashboard's copy of the hub's picture, kept by applying the hub's frames (docs/hub.md).

export interface Car {
  lat: number;
  lon: number;
  battery: number;
  velocity: number;
  timestamp: number;
  heading?: number;
  station_id?: string;
}

export interface Station {
  name: string;
  lat: number;
  lon: number;
  capacity: number;
  power_kw: number;
  booked: number;
  plugged: number;
  free: number;
  site_id?: string;
}

export interface Booking {
  car_id: string;
  station_id: string;
  expires_at: number;
  created: number;
}

export interface Plan {
  car_id: string;
  site_id?: string;
  station_id?: string;
  timestamp: number;
  start: number;
  slot_minutes?: number;
  power_kw: number[];
  expected_kwh?: number;
  expected_cost?: number;
  shortfall_kwh?: number;
  feasible: boolean;
  reason?: string;
  setpoint_kw: number;
  setpoint_until: number;
}

export type Stats = Record<string, number | null>;

interface Objects {
  cars: Record<string, Car | null>;
  stations: Record<string, Station | null>;
  bookings: Record<string, Booking | null>;
  plans: Record<string, Plan | null>;
}

export type Frame =
  | ({ type: "snapshot"; epoch: string; seq: number; reason?: string; stats: Stats } & Objects)
  | ({ type: "changes"; from: number; seq: number; coalesced: number; stats?: Stats } & Partial<Objects>)
  | { type: "error"; field: string; message: string };

export const KINDS = ["cars", "stations", "bookings", "plans"] as const;

export class FleetModel {
  cars = new Map<string, Car>();
  stations = new Map<string, Station>();
  bookings = new Map<string, Booking>();
  plans = new Map<string, Plan>();
  stats: Stats = {};
  seq: number | null = null;
  epoch: string | null = null;
  frames = 0;
  snapshots = 0;
  carChanges = 0;
  version = 0; // bumped by every frame that changed something

  /** Apply one frame; false when it does not follow our position (resubscribe then). */
  apply(frame: Frame): boolean {
    if (frame.type === "error") return true;
    this.frames += 1;
    if (frame.type === "snapshot") {
      this.snapshots += 1;
      this.epoch = frame.epoch;
      this.cars = toMap(frame.cars);
      this.stations = toMap(frame.stations);
      this.bookings = toMap(frame.bookings);
      this.plans = toMap(frame.plans);
      this.carChanges += this.cars.size;
    } else {
      if (this.seq === null || frame.from !== this.seq) return false;
      this.carChanges += merge(this.cars, frame.cars);
      merge(this.stations, frame.stations);
      merge(this.bookings, frame.bookings);
      merge(this.plans, frame.plans);
    }
    if (frame.stats) this.stats = frame.stats;
    this.seq = frame.seq;
    this.version += 1;
    return true;
  }

  bookingOf(carId: string): [string, Booking] | undefined {
    for (const entry of this.bookings) if (entry[1].car_id === carId) return entry;
    return undefined;
  }

  /** The setpoint a plugged-in car charges at now, if its plan has one. */
  setpoint(carId: string, now: number): number | undefined {
    const car = this.cars.get(carId);
    const plan = this.plans.get(carId);
    if (!car?.station_id || !plan) return undefined;
    return plan.setpoint_until > now ? plan.setpoint_kw : undefined;
  }
}

function toMap<T>(values: Record<string, T | null>): Map<string, T> {
  const map = new Map<string, T>();
  for (const [key, value] of Object.entries(values)) if (value !== null) map.set(key, value);
  return map;
}

function merge<T>(into: Map<string, T>, changes: Record<string, T | null> | undefined): number {
  if (!changes) return 0;
  let n = 0;
  for (const [key, value] of Object.entries(changes)) {
    if (value === null) into.delete(key);
    else into.set(key, value);
    n += 1;
  }
  return n;
}

// The seed's bands: green > 50 %, yellow 20-50 %, red < 20 %, critical < 15 %.
export type RGBA = [number, number, number, number];
export const GREEN: RGBA = [34, 197, 94, 230];
export const YELLOW: RGBA = [234, 179, 8, 230];
export const RED: RGBA = [239, 68, 68, 240];
export const BOOKING: RGBA = [217, 70, 239, 220];

export function batteryColor(battery: number): RGBA {
  if (battery > 50) return GREEN;
  if (battery >= 20) return YELLOW;
  return RED;
}

export const isCritical = (battery: number): boolean => battery < 15;

export function stationColor(s: Station): RGBA {
  if (s.capacity <= 0 || s.free <= 0) return [148, 163, 184, 220]; // full: slate
  const share = s.free / s.capacity;
  return share >= 0.5 ? [56, 189, 248, 230] : [99, 102, 241, 230]; // many free: sky; few: indigo
}
