// Build this flavor into a component with componentize-js (pinned in
// package.json / package-lock.json). Usage: node build.mjs OUT.wasm
//
// componentize-js is called through its JS API: jco's `jco componentize`
// command cannot read the source directory on this machine kind (its file
// system shim opens no directories).
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { componentize } from '@bytecodealliance/componentize-js';

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? `${here}/{{name}}.wasm`);
const source = await readFile(`${here}/flavor.js`, 'utf8');
const { component } = await componentize(source, {
  sourceName: 'flavor.js',
  witPath: `${here}/wit`,
  worldName: 'flavor',
  // The flavor needs no HTTP and no fetch event handler: without them the
  // component imports no wasi:http.
  disableFeatures: ['http', 'fetch-event'],
});
await writeFile(out, component);
console.log(`built ${out} (${(component.length / (1 << 20)).toFixed(1)} MiB)`);
