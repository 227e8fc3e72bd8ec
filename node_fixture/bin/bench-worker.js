#!/usr/bin/env node
'use strict';
// The Node side of `make bench` (benchmarks/run.py): one Node bullmq worker, configured the way
// Twenty's worker runs a queue, with a no-op processor, until it has completed --jobs jobs.
//
//   node node_fixture/bin/bench-worker.js --queue Q --jobs N --concurrency C [--mode drain|latency]
//        [--cpu-ms MS]
//
// With --cpu-ms, every job busy-loops until the process has used MS more milliseconds of CPU
// (process.cpuUsage), the Node side of the CPU-bound scenario; without it the processor is a no-op.
//
// Environment: REDIS_URL, TJ_PREFIX (key prefix), TWENTY_JOBS_NODE_BULLMQ (build, see lib/bullmq.js).
//
// Prints JSON lines on stdout: {"event":"ready"} once the worker is connected, then one
// {"event":"done", ...} with the measurements, taken from the first processor call to the N-th
// `completed` event (the same window the Python side measures):
//   elapsed_s, cpu_ms (process.cpuUsage over the window), max_rss_kb (resourceUsage),
//   and in latency mode the start latencies (processor start minus data.ts, in ms).

const { performance } = require('perf_hooks');
const { bullmq, version, IORedis } = require('../lib/bullmq');
const { parseArgs, required, int } = require('../lib/args');
const twenty = require('../lib/twenty');

const { Worker } = bullmq;

const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
const PREFIX = process.env.TJ_PREFIX || 'bull';

function emit(record) {
  process.stdout.write(`${JSON.stringify(record)}\n`);
}

function cpuMs(usage) {
  return (usage.user + usage.system) / 1000;
}

// Busy-loop on CPU time, not wall time: a preempted loop still burns the full amount.
function spin(ms) {
  const start = process.cpuUsage();
  while (cpuMs(process.cpuUsage(start)) < ms) {
    // burn
  }
}

function positiveNumber(opts, key) {
  const value = opts[key];
  if (value === undefined) return 0;
  const n = Number(value);
  if (value === true || !(n > 0)) throw new Error(`--${key} needs a positive number, got '${value}'`);
  return n;
}

async function main() {
  const { opts } = parseArgs(['bench', ...process.argv.slice(2)]);
  const queueName = required(opts, 'queue');
  const jobs = int(opts, 'jobs', 20000);
  const mode = opts.mode || 'drain';
  const config = twenty.queueConfig(queueName);
  const concurrency = int(opts, 'concurrency', config.concurrency);
  const busyMs = positiveNumber(opts, 'cpu-ms');

  // Twenty's queue client: one ioredis with maxRetriesPerRequest null (redis-client.service.ts);
  // bullmq duplicates it for the worker's blocking connection.
  const connection = new IORedis(REDIS_URL, { maxRetriesPerRequest: null });

  let firstAt = null;
  let firstCpu = null;
  let done = 0;
  const latencies = mode === 'latency' ? [] : null;
  let finish;
  const finished = new Promise((resolve) => {
    finish = resolve;
  });

  const processor = async (job) => {
    if (firstAt === null) {
      firstAt = performance.now();
      firstCpu = process.cpuUsage();
    }
    if (latencies !== null) {
      latencies.push(performance.timeOrigin + performance.now() - job.data.ts);
    }
    if (busyMs > 0) spin(busyMs);
  };

  // MESSAGE_QUEUE_WORKER_CONFIG values plus the metrics option Twenty's BullMQ driver sets.
  const worker = new Worker(queueName, processor, {
    connection,
    prefix: PREFIX,
    concurrency,
    lockDuration: config.lockDuration,
    maxStalledCount: config.maxStalledCount,
    metrics: { maxDataPoints: bullmq.MetricsTime.ONE_WEEK },
  });
  worker.on('completed', () => {
    done += 1;
    if (done === jobs) {
      const elapsedMs = performance.now() - firstAt;
      const cpu = cpuMs(process.cpuUsage(firstCpu));
      finish({ elapsedMs, cpu });
    }
  });
  worker.on('failed', (job, err) => process.stderr.write(`job failed: ${err && err.stack}\n`));
  worker.on('error', (err) => process.stderr.write(`worker error: ${err && err.stack}\n`));

  await worker.waitUntilReady();
  emit({ event: 'ready', pid: process.pid, bullmq: version });
  const { elapsedMs, cpu } = await finished;
  const record = {
    event: 'done',
    impl: 'node',
    bullmq: version,
    node: process.version,
    mode,
    concurrency,
    processed: done,
    elapsed_s: elapsedMs / 1000,
    cpu_ms: cpu,
    max_rss_kb: process.resourceUsage().maxRSS,
  };
  if (latencies !== null) record.latencies_ms = latencies;
  emit(record);
  await worker.close();
  await connection.quit().catch(() => connection.disconnect());
}

main().then(
  () => {
    // Nothing should keep the loop alive now; do not hang the benchmark if a timer does.
    setTimeout(() => process.exit(0), 2000).unref();
  },
  (err) => {
    process.stderr.write(`bench-worker error: ${err && err.stack ? err.stack : err}\n`);
    process.exit(1);
  },
);
