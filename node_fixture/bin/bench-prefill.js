#!/usr/bin/env node
'use strict';
// The producer side of `make bench` (benchmarks/run.py): Twenty-shaped jobs added by Node bullmq
// the way Twenty's BullMQDriver adds them (lib/twenty.js buildJobOpts: the queue's priority,
// attempts 1, QUEUE_RETENTION removeOnComplete/removeOnFail).
//
//   node node_fixture/bin/bench-prefill.js --queue Q --name JobName --jobs N [--rate R]
//
// Without --rate: adds N jobs with addBulk (chunks of --chunk, default 1000) and exits.
// With --rate: adds N jobs one at a time at R jobs/s (the idle-pickup latency probe); data.ts is
// then a sub-millisecond epoch timestamp (performance.timeOrigin + performance.now()).
//
// Data: {"i": n, "workspaceId": <uuid>, "ts": <epoch ms>}. Prints one JSON document on stdout.

const crypto = require('crypto');
const { performance } = require('perf_hooks');
const { bullmq, version, IORedis } = require('../lib/bullmq');
const { parseArgs, required, int } = require('../lib/args');
const twenty = require('../lib/twenty');

const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
const PREFIX = process.env.TJ_PREFIX || 'bull';

// A handful of workspaces, as in a real Twenty install.
const WORKSPACES = Array.from({ length: 8 }, () => crypto.randomUUID());

function nowMs() {
  return performance.timeOrigin + performance.now();
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function main() {
  const { opts } = parseArgs(['prefill', ...process.argv.slice(2)]);
  const queueName = required(opts, 'queue');
  const name = required(opts, 'name');
  const jobs = int(opts, 'jobs', 20000);
  const chunk = int(opts, 'chunk', 1000);
  const rate = int(opts, 'rate', undefined);
  const connection = new IORedis(REDIS_URL, { maxRetriesPerRequest: null });
  const queue = new bullmq.Queue(queueName, { connection, prefix: PREFIX });
  const started = performance.now();
  try {
    if (rate === undefined) {
      for (let start = 0; start < jobs; start += chunk) {
        const batch = [];
        for (let i = start; i < Math.min(jobs, start + chunk); i += 1) {
          batch.push({
            name,
            data: { i, workspaceId: WORKSPACES[i % WORKSPACES.length], ts: Date.now() },
            opts: twenty.buildJobOpts(queueName, {}),
          });
        }
        await queue.addBulk(batch);
      }
    } else {
      const periodMs = 1000 / rate;
      for (let i = 0; i < jobs; i += 1) {
        const due = started + i * periodMs;
        const wait = due - performance.now();
        if (wait > 0) await sleep(wait);
        await queue.add(
          name,
          { i, workspaceId: WORKSPACES[i % WORKSPACES.length], ts: nowMs() },
          twenty.buildJobOpts(queueName, {}),
        );
      }
    }
    const elapsed = (performance.now() - started) / 1000;
    process.stdout.write(`${JSON.stringify({ added: jobs, elapsed_s: elapsed, bullmq: version })}\n`);
  } finally {
    await queue.close();
    await connection.quit().catch(() => connection.disconnect());
  }
}

main().then(
  () => setTimeout(() => process.exit(0), 2000).unref(),
  (err) => {
    process.stderr.write(`bench-prefill error: ${err && err.stack ? err.stack : err}\n`);
    process.exit(1);
  },
);
