import { defineConfig } from "vite";
import { svelte } from "@sveltejs/vite-plugin-svelte";

// The console is one page served from the binary (tauri://localhost in the window, the
// HTTP server in a browser): relative asset URLs, hashed file names (cached for long by the
// server), everything bundled (no CDN, no remote fonts), and no inline script (the CSP).
export default defineConfig({
  plugins: [svelte()],
  base: "./",
  build: {
    outDir: "dist",
    assetsDir: "assets",
    emptyOutDir: true,
    target: ["es2022", "chrome110", "safari16"],
    // Inlined assets would become data: URLs; keep every asset a file of its own.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    chunkSizeWarningLimit: 1200,
    reportCompressedSize: false,
  },
  server: {
    // `npm run dev` against a running `stepdesk serve` on the default port.
    proxy: { "/api": "http://127.0.0.1:8288", "/e": "http://127.0.0.1:8288" },
  },
});
