// `{{name}}`: a stepbox flavor. It runs each step's entrypoint as one job on
// the step operator's default backend and waits for it. WIT maps to
// JavaScript as jco does: camelCase fields, variants as `{ tag, val }`, u64
// as BigInt, error results thrown.

import { log } from 'stepbox:operator/log@{{contract}}';
import { submit } from 'stepbox:operator/jobs@{{contract}}';

const CONFIG_SCHEMA = JSON.stringify({
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  type: 'object',
  properties: {
    timeout_seconds: { type: ['integer', 'null'], minimum: 1, description: 'Cancel a step that runs longer than this.' },
  },
  additionalProperties: false,
});
const SETTINGS_SCHEMA = JSON.stringify({ type: 'object', additionalProperties: false });

/** The configuration: a JSON object with an optional `timeout_seconds`. */
function timeoutSeconds(config) {
  let value;
  try {
    value = JSON.parse(config || '{}');
  } catch (error) {
    throw { field: undefined, message: `not JSON: ${error.message}` };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw { field: undefined, message: 'expected a JSON object' };
  }
  for (const key of Object.keys(value)) {
    if (key !== 'timeout_seconds') {
      throw { field: key, message: `unknown field \`${key}\`` };
    }
  }
  const seconds = value.timeout_seconds;
  if (seconds != null && !(Number.isInteger(seconds) && seconds >= 1)) {
    throw { field: 'timeout_seconds', message: `must be a whole number of seconds, at least 1, got ${JSON.stringify(seconds)}` };
  }
  return seconds ?? undefined;
}

function hostError(error) {
  const host = error?.payload;
  if (host?.tag === 'denied' || host?.tag === 'cancelled') {
    return { tag: host.tag, val: host.val };
  }
  return { tag: 'failed', val: host?.val ?? String(error) };
}

export const operator = {
  metadata() {
    return {
      name: '{{name}}',
      displayName: '{{name}}',
      version: '0.1.0',
      description: 'Runs each step as one job and waits for it.',
      docsUrl: undefined,
      configSchema: CONFIG_SCHEMA,
      settingsSchema: SETTINGS_SCHEMA,
    };
  },

  validateConfig(config) {
    timeoutSeconds(config);
  },

  launch(config, request) {
    let timeout;
    try {
      timeout = timeoutSeconds(config);
    } catch (problem) {
      throw { tag: 'invalid-config', val: problem };
    }
    log('info', `running step ${request.stepName}`);
    try {
      const job = submit({
        name: request.stepName,
        backend: undefined,
        command: request.entrypointCommand,
        env: request.environment,
        workingDir: request.sourceRoot,
        resources: request.resources,
        timeoutSeconds: timeout === undefined ? undefined : BigInt(timeout),
        runtime: { tag: 'host' },
        backendOptions: [],
      });
      const status = job.wait();
      return { jobIds: [job.id()], state: status.state, exitCode: status.exitCode, message: status.message };
    } catch (error) {
      throw hostError(error);
    }
  },
};
