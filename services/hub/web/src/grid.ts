// A coordinate grid for the plain background: lines every "nice" step for the view.
import type { FeatureCollection, LineString } from "./geojson";

const STEPS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export function gridStep(span: number, lines = 8): number {
  for (const step of STEPS) if (span / step <= lines) return step;
  return STEPS[STEPS.length - 1];
}

export function gridLines(west: number, south: number, east: number, north: number): {
  step: number;
  lines: FeatureCollection<LineString>;
} {
  const step = gridStep(Math.max(east - west, north - south));
  const features: FeatureCollection<LineString>["features"] = [];
  const line = (coordinates: [number, number][]) =>
    features.push({ type: "Feature", properties: {}, geometry: { type: "LineString", coordinates } });
  for (let x = Math.floor(west / step) * step; x <= east; x += step) line([[x, south], [x, north]]);
  for (let y = Math.floor(south / step) * step; y <= north; y += step) line([[west, y], [east, y]]);
  return { step, lines: { type: "FeatureCollection", features } };
}
