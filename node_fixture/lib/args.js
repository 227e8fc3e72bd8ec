'use strict';
// `--key value` flags. A flag with no value (end of argv or followed by another `--flag`) is true.

function parseArgs(argv) {
  const [command, ...rest] = argv;
  const opts = {};
  for (let i = 0; i < rest.length; i += 1) {
    const token = rest[i];
    if (!token.startsWith('--')) {
      throw new Error(`unexpected argument '${token}' (options are --key value)`);
    }
    const key = token.slice(2);
    const next = rest[i + 1];
    if (next === undefined || next.startsWith('--')) {
      opts[key] = true;
    } else {
      opts[key] = next;
      i += 1;
    }
  }
  return { command, opts };
}

function required(opts, key) {
  const value = opts[key];
  if (value === undefined || value === true) {
    throw new Error(`--${key} is required`);
  }
  return value;
}

function json(opts, key, fallback) {
  const value = opts[key];
  if (value === undefined) return fallback;
  if (value === true) throw new Error(`--${key} needs a JSON value`);
  try {
    return JSON.parse(value);
  } catch (err) {
    throw new Error(`--${key} is not valid JSON: ${err.message}`);
  }
}

function int(opts, key, fallback) {
  const value = opts[key];
  if (value === undefined) return fallback;
  const n = Number(value);
  if (value === true || !Number.isInteger(n)) throw new Error(`--${key} needs an integer, got '${value}'`);
  return n;
}

module.exports = { parseArgs, required, json, int };
