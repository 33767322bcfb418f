// Copies the console's libraries from node_modules into static/vendor, rewriting
// the one bare import (preact/hooks -> "preact") to a relative path, since the
// browser loads them as they are (no bundler, no import map: CSP forbids inline
// scripts). The two UMD builds (drawflow, diff) get a CommonJS `module` to fill
// and an ES default export of it. `node vendor.mjs --check` exits 1 when a
// committed copy is stale.

import { readFileSync, writeFileSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const umd = (s) => `const module = { exports: {} }; const exports = module.exports;\n${s}\nexport default module.exports;\n`;
const FILES = {
  "preact.js": ["preact/dist/preact.module.js"],
  "hooks.js": ["preact/hooks/dist/hooks.module.js", (s) => s.replaceAll('from"preact"', 'from"./preact.js"')],
  "htm.js": ["htm/dist/htm.module.js"],
  "uplot.js": ["uplot/dist/uPlot.esm.js"],
  "uplot.css": ["uplot/dist/uPlot.min.css"],
  "drawflow.js": ["drawflow/dist/drawflow.min.js", umd],
  "drawflow.css": ["drawflow/dist/drawflow.min.css"],
  "diff.js": ["diff/dist/diff.min.js", umd],
  "js-yaml.js": ["js-yaml/dist/js-yaml.mjs"],
};

const check = process.argv.includes("--check");
let stale = 0;
for (const [name, [source, rewrite = (s) => s]] of Object.entries(FILES)) {
  const wanted = rewrite(readFileSync(join(here, "node_modules", source), "utf8"));
  const target = join(here, "static", "vendor", name);
  const current = existsSync(target) ? readFileSync(target, "utf8") : null;
  if (current === wanted) continue;
  if (check) {
    console.error(`static/vendor/${name} is stale: run \`make console-vendor\``);
    stale += 1;
  } else {
    writeFileSync(target, wanted);
    console.log(`wrote static/vendor/${name}`);
  }
}
process.exit(stale ? 1 : 0);
