// Build the flavor in this directory (flavor.js against wit/, world `flavor`)
// into a component with componentize-js, pinned in package.json and its lock
// file. `stepbox new --lang js` writes this same file into new projects.
//
//   node build.mjs OUT.wasm
//
// componentize-js is called through its JS API: jco's `jco componentize`
// command cannot read the source directory on this machine kind (its file
// system shim opens no directories).
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { componentize } from '@bytecodealliance/componentize-js';

if (process.argv.length !== 3) {
  console.error('usage: node build.mjs OUT.wasm');
  process.exit(64);
}
const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2]);
const source = await readFile(`${here}/flavor.js`, 'utf8');
const { component } = await componentize(source, {
  sourceName: 'flavor.js',
  witPath: `${here}/wit`,
  worldName: 'flavor',
  // No HTTP and no fetch event handler: the component imports no wasi:http.
  disableFeatures: ['http', 'fetch-event'],
});
await writeFile(out, component);
console.log(`built ${out} (${(component.length / (1 << 20)).toFixed(1)} MiB)`);
