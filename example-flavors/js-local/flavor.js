// `js-local`: the local flavor, written in JavaScript.
//
// Does what the Rust `local` flavor does, against the same contract: decodes
// its configuration and the per-step settings, installs the step's Python
// requirements into an environment (`requirements`), submits the entrypoint to
// run in it (`jobs`) and waits. Built into a component by componentize-js
// (build.mjs). WIT names map to JavaScript as jco does: camelCase fields,
// variants as `{ tag, val }`, u64 as BigInt, errors thrown.

import { log } from 'stepbox:operator/log@0.2.1';
import { submit } from 'stepbox:operator/jobs@0.2.1';
import { install } from 'stepbox:operator/requirements@0.2.1';

const NAME = 'js-local';
const VERSION = '0.1.0';

// Field name -> [JSON type, description]. The same fields as the Rust flavor.
const CONFIG_FIELDS = {
  timeout_seconds: ['integer', 'Cancel a step that runs longer than this many seconds.'],
  environment: ['object', "Environment variables added to every step (the step's own win)."],
  working_dir: ['string', "Run steps in this directory instead of the step's source root."],
  backend: ['string', "The job backend to use; the step operator's default when absent."],
  python_version: ['string', "The Python version of the environment made for a step's requirements."],
};
const SETTINGS_FIELDS = {
  timeout_seconds: ['integer', 'Overrides the configured timeout for this step.'],
  environment: ['object', 'Environment variables for this step only.'],
};

/** A JSON Schema (draft 2020-12) for an object with these optional fields. */
function schema(title, fields) {
  const properties = {};
  for (const [name, [kind, description]] of Object.entries(fields)) {
    if (kind === 'integer') {
      properties[name] = { type: ['integer', 'null'], minimum: 0, description };
    } else if (kind === 'object') {
      properties[name] = { type: 'object', additionalProperties: { type: 'string' }, description };
    } else {
      properties[name] = { type: ['string', 'null'], description };
    }
  }
  return JSON.stringify({
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    title,
    type: 'object',
    properties,
    additionalProperties: false,
  });
}

/** A configuration or settings problem, blamed on a field when one is to blame. */
class Invalid extends Error {
  constructor(field, message) {
    super(message);
    this.field = field;
  }

  configError() {
    return { field: this.field ?? undefined, message: this.message };
  }
}

/** Parse `text` as a JSON object of `fields`, naming the field that is wrong. */
function decode(text, what, fields) {
  if (text.trim() === '' || text.trim() === 'null') {
    return {};
  }
  let value;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new Invalid(null, `${what}: not JSON: ${error.message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new Invalid(null, `${what}: expected a JSON object`);
  }
  for (const [key, item] of Object.entries(value)) {
    if (!(key in fields)) {
      const expected = Object.keys(fields).map((name) => `\`${name}\``).join(', ');
      throw new Invalid(key, `${what}: unknown field \`${key}\`, expected one of ${expected}`);
    }
    const kind = fields[key][0];
    if (item === null && kind !== 'object') {
      continue;
    }
    if (kind === 'integer' && !(Number.isInteger(item) && item >= 0)) {
      throw new Invalid(key, `${what}: invalid type: expected a non-negative integer, got ${JSON.stringify(item)}`);
    }
    if (kind === 'string' && typeof item !== 'string') {
      throw new Invalid(key, `${what}: invalid type: expected a string, got ${JSON.stringify(item)}`);
    }
    if (kind === 'object' && (item === null || typeof item !== 'object' || Array.isArray(item)
        || !Object.values(item).every((v) => typeof v === 'string'))) {
      throw new Invalid(key, `${what}: invalid type: expected a map of strings`);
    }
  }
  return value;
}

const validEnvName = (name) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(name);

function validate(config) {
  if (config.timeout_seconds === 0) {
    throw new Invalid('timeout_seconds', 'must be at least 1 second');
  }
  for (const name of Object.keys(config.environment ?? {})) {
    if (!validEnvName(name)) {
      throw new Invalid(`environment.${name}`,
        'is not a valid environment variable name (letters, digits and _, not starting with a digit)');
    }
  }
  const dir = config.working_dir;
  if (dir != null && !dir.startsWith('/')) {
    throw new Invalid('working_dir', 'must be an absolute path');
  }
}

/** A host error (thrown by an import) as the launch's error. */
function launchError(error) {
  const host = error?.payload;
  if (!host || typeof host.tag !== 'string') {
    return { tag: 'failed', val: `the flavor failed: ${error}` };
  }
  switch (host.tag) {
    case 'denied': return { tag: 'denied', val: host.val };
    case 'cancelled': return { tag: 'cancelled', val: host.val };
    case 'invalid': return { tag: 'failed', val: `invalid request: ${host.val}` };
    case 'unsupported': return { tag: 'failed', val: `unsupported: ${host.val}` };
    default: return { tag: 'failed', val: host.val };
  }
}

function run(config, settings, request) {
  const env = [...request.environment];
  const defaults = { ...(config.environment ?? {}), ...(settings.environment ?? {}) };
  for (const [name, value] of Object.entries(defaults)) {
    if (!env.some((v) => v.name === name)) {
      env.push({ name, value });
    }
  }
  const timeout = settings.timeout_seconds ?? config.timeout_seconds;
  let runtime = { tag: 'host' };
  if (request.requirements.length > 0) {
    log('info', `installing ${request.requirements.length} requirements`);
    const environment = install({
      requirements: request.requirements,
      pythonVersion: config.python_version ?? undefined,
    });
    runtime = { tag: 'environment', val: environment.handle };
  }
  log('info', `running step ${request.stepName} of ${request.pipelineName}/${request.runName}`);
  const job = submit({
    name: request.stepName,
    backend: config.backend ?? undefined,
    command: request.entrypointCommand,
    env,
    workingDir: config.working_dir ?? request.sourceRoot,
    resources: request.resources,
    timeoutSeconds: timeout == null ? undefined : BigInt(timeout),
    runtime,
    backendOptions: [],
  });
  const id = job.id();
  log('debug', `submitted job ${id}`);
  const status = job.wait();
  return { jobIds: [id], state: status.state, exitCode: status.exitCode, message: status.message };
}

export const operator = {
  metadata() {
    return {
      name: NAME,
      displayName: 'Local process (JavaScript)',
      version: VERSION,
      description: 'Runs each step as a process on the machine stepbox runs on, and waits for it. '
        + 'Written in JavaScript.',
      docsUrl: undefined,
      configSchema: schema('Config', CONFIG_FIELDS),
      settingsSchema: schema('Settings', SETTINGS_FIELDS),
    };
  },

  validateConfig(config) {
    try {
      validate(decode(config, 'invalid configuration', CONFIG_FIELDS));
    } catch (error) {
      if (error instanceof Invalid) {
        throw error.configError();
      }
      throw { field: undefined, message: `the flavor failed: ${error}` };
    }
  },

  launch(config, request) {
    let decoded;
    let settings;
    try {
      decoded = decode(config, 'invalid configuration', CONFIG_FIELDS);
      validate(decoded);
      settings = decode(request.settings, 'invalid step settings', SETTINGS_FIELDS);
      if (settings.timeout_seconds === 0) {
        throw new Invalid('timeout_seconds', 'step setting must be at least 1 second');
      }
    } catch (error) {
      if (error instanceof Invalid) {
        throw { tag: 'invalid-config', val: error.configError() };
      }
      throw error;
    }
    try {
      return run(decoded, settings, request);
    } catch (error) {
      throw launchError(error);
    }
  },
};
