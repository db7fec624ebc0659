// The little of GeoJSON the grid needs (no @types package for it).
export interface LineString {
  type: "LineString";
  coordinates: [number, number][];
}

export interface Feature<G> {
  type: "Feature";
  properties: Record<string, unknown>;
  geometry: G;
}

export interface FeatureCollection<G> {
  type: "FeatureCollection";
  features: Feature<G>[];
}
