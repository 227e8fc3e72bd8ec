'use strict';
// The one place that picks which Node bullmq build the fixture runs.
//
// TWENTY_JOBS_NODE_BULLMQ selects the build:
//   5.40.0   (default) Twenty's pin up to mid-2026, package "bullmq"
//   5.78.0   current Twenty's pin (docs/interop.md), npm alias "bullmq-5-78"
//   5-latest the newest 5.x, npm alias "bullmq-5-latest"
//   6.4      bullmq 6.4.x, npm alias "bullmq-6" (the Lua the Python port 3.4.4 ships)
//   6.7      bullmq 6.7.x, the newest release, npm alias "bullmq-6-7"
//   any other published version X.Y.Z: the copy `make interop NODE_BULLMQ=X.Y.Z` installed under
//            node_fixture/.custom/X.Y.Z (scripts/install-node-bullmq.sh)
// Each build gets the ioredis it resolves itself, so a Redis client we hand to it is one it
// recognises (bullmq 6 takes ioredis as a peer, the top-level pin; 5.x after 5.40 nests its own).

const fs = require('fs');
const path = require('path');

const FIXTURE_DIR = path.join(__dirname, '..');

const BUILDS = {
  '5.40.0': 'bullmq',
  '5.78.0': 'bullmq-5-78',
  '5-latest': 'bullmq-5-latest',
  '6.4': 'bullmq-6',
  '6.7': 'bullmq-6-7',
};

const EXACT_VERSION = /^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/;

// Where the selected build lives: one of the aliases in node_modules, or a custom install.
function locate(selector) {
  if (BUILDS[selector]) {
    const packageName = BUILDS[selector];
    return {
      packageName,
      packageDir: path.join(FIXTURE_DIR, 'node_modules', packageName),
      howToInstall: "run 'make install' (or 'npm ci' in node_fixture/)",
    };
  }
  if (EXACT_VERSION.test(selector)) {
    return {
      packageName: 'bullmq',
      packageDir: path.join(FIXTURE_DIR, '.custom', selector, 'node_modules', 'bullmq'),
      howToInstall: `run 'make interop NODE_BULLMQ=${selector}' (or 'bash scripts/install-node-bullmq.sh ${selector}')`,
    };
  }
  return null;
}

// A wrong selection is bad input, not a bug: one line on stderr, no stack trace.
function refuse(message) {
  process.stderr.write(`${message}\n`);
  process.exit(2);
}

const selector = process.env.TWENTY_JOBS_NODE_BULLMQ || '5.40.0';
const located = locate(selector);
if (located === null) {
  refuse(
    `TWENTY_JOBS_NODE_BULLMQ=${selector} is neither one of ${Object.keys(BUILDS).join(', ')} ` +
      'nor an exact version such as 5.52.1',
  );
}
const { packageName, packageDir, howToInstall } = located;
if (!fs.existsSync(path.join(packageDir, 'package.json'))) {
  refuse(`bullmq for TWENTY_JOBS_NODE_BULLMQ=${selector} is not installed in ${packageDir}: ${howToInstall}`);
}

const bullmq = require(packageDir);
// The real installed version, read from the package itself (not from our package.json).
const version = JSON.parse(fs.readFileSync(path.join(packageDir, 'package.json'), 'utf8')).version;
const IORedis = require(require.resolve('ioredis', { paths: [packageDir] }));

module.exports = { bullmq, version, selector, packageName, IORedis };
