// The dashboard is served by the hub at /, its files under /assets/ (see greenlane.hub.app).
import { defineConfig } from "vite";

export default defineConfig({
  base: "/",
  build: {
    outDir: "dist",
    assetsDir: "assets",
    emptyOutDir: true,
    chunkSizeWarningLimit: 4000, // MapLibre and deck.gl are big; the page loads them once
  },
});
