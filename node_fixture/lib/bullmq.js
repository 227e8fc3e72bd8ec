'use strict';
// The one place that picks which Node bullmq build the fixture runs.
//
// TWENTY_JOBS_NODE_BULLMQ selects the build:
//   5.40.0   (default) Twenty's pin, package "bullmq"
//   5-latest the newest 5.x, npm alias "bullmq-5-latest"
//   6.4      bullmq 6.4.x, npm alias "bullmq-6" (the Lua the Python port 3.4.4 ships)
// Each build gets the ioredis it resolves itself, so a Redis client we hand to it is one it
// recognises (bullmq 6 takes ioredis as a peer, the top-level pin; 5.x latest nests its own).

const fs = require('fs');
const path = require('path');

const BUILDS = {
  '5.40.0': 'bullmq',
  '5-latest': 'bullmq-5-latest',
  '6.4': 'bullmq-6',
};

const selector = process.env.TWENTY_JOBS_NODE_BULLMQ || '5.40.0';
const packageName = BUILDS[selector];
if (!packageName) {
  throw new Error(
    `TWENTY_JOBS_NODE_BULLMQ=${selector} is not one of ${Object.keys(BUILDS).join(', ')}`,
  );
}

const packageDir = path.join(__dirname, '..', 'node_modules', packageName);
if (!fs.existsSync(packageDir)) {
  throw new Error(
    `${packageName} is not installed in ${path.dirname(packageDir)}: run 'make install' ` +
      `(or 'npm ci' in node_fixture/)`,
  );
}

const bullmq = require(packageName);
// The real installed version, read from the package itself (not from our package.json).
const version = JSON.parse(fs.readFileSync(path.join(packageDir, 'package.json'), 'utf8')).version;
const IORedis = require(require.resolve('ioredis', { paths: [packageDir] }));

module.exports = { bullmq, version, selector, packageName, IORedis };
