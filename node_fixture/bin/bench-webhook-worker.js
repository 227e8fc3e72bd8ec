#!/usr/bin/env node
'use strict';
// The Node side of the webhook benchmark: Twenty's CallWebhookJob run by a Node bullmq worker
// configured the way Twenty's worker runs webhook-queue, until --jobs jobs are done.
//
//   node node_fixture/bin/bench-webhook-worker.js --jobs N [--queue webhook-queue]
//        [--concurrency C] [--timeout-ms 5000]
//
// Environment: REDIS_URL, TJ_PREFIX (key prefix), TWENTY_JOBS_NODE_BULLMQ (build, see lib/bullmq.js).
//
// What the processor does is what Twenty's CallWebhookJob does (docs/interop.md, "CallWebhookJob
// in Node"): the job's data is a list of payloads; every payload is POSTed at once (Promise.all),
// as JSON without its `secret`; with a secret, X-Twenty-Webhook-Timestamp (Date.now()),
// X-Twenty-Webhook-Signature (hex HMAC-SHA256 of `<timestamp>:<body>` keyed with the secret) and
// X-Twenty-Webhook-Nonce (16 random bytes, hex); 5 s timeout; a failed delivery is counted and
// swallowed, never retried, as Twenty does.
//
// Prints JSON lines on stdout: {"event":"ready"} once the worker is connected, then one
// {"event":"done", ...} after the N-th job finished: elapsed_s (first processor call to the N-th
// `completed`/`failed` event), deliveries_ok, deliveries_failed, jobs_failed, cpu_ms, max_rss_kb.

const crypto = require('crypto');
const { performance } = require('perf_hooks');
const { bullmq, version, IORedis } = require('../lib/bullmq');
const { parseArgs, int } = require('../lib/args');
const twenty = require('../lib/twenty');

const { Worker } = bullmq;

const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
const PREFIX = process.env.TJ_PREFIX || 'bull';
const JOB_NAME = 'CallWebhookJob';

function emit(record) {
  process.stdout.write(`${JSON.stringify(record)}\n`);
}

function cpuMs(usage) {
  return (usage.user + usage.system) / 1000;
}

// twenty-shared's ensureAbsoluteUrl: trimmed; https:// unless it already says http(s)://.
function absoluteUrl(value) {
  const trimmed = String(value).trim();
  return /^https?:\/\//i.test(trimmed) ? trimmed : `https://${trimmed}`;
}

function signedHeaders(secret, body) {
  const headers = { 'Content-Type': 'application/json' };
  if (secret) {
    const timestamp = Date.now().toString();
    headers['X-Twenty-Webhook-Timestamp'] = timestamp;
    headers['X-Twenty-Webhook-Signature'] = crypto
      .createHmac('sha256', secret)
      .update(`${timestamp}:${body}`)
      .digest('hex');
    headers['X-Twenty-Webhook-Nonce'] = crypto.randomBytes(16).toString('hex');
  }
  return headers;
}

async function main() {
  const { opts } = parseArgs(['bench-webhook', ...process.argv.slice(2)]);
  const queueName = opts.queue || 'webhook-queue';
  const jobs = int(opts, 'jobs', 1000);
  const timeoutMs = int(opts, 'timeout-ms', 5000);
  const config = twenty.queueConfig(queueName);
  const concurrency = int(opts, 'concurrency', config.concurrency);

  const deliveries = { ok: 0, failed: 0 };

  // Returns whether the receiver answered 2xx; never throws (Twenty swallows delivery errors).
  async function deliver(item) {
    const { secret, ...payload } = item;
    const body = JSON.stringify(payload);
    try {
      const response = await fetch(absoluteUrl(item.targetUrl), {
        method: 'POST',
        headers: signedHeaders(secret, body),
        body,
        signal: AbortSignal.timeout(timeoutMs),
      });
      await response.arrayBuffer(); // read to the end so the connection goes back to the pool
      return response.status >= 200 && response.status < 300;
    } catch {
      return false;
    }
  }

  const connection = new IORedis(REDIS_URL, { maxRetriesPerRequest: null });

  let firstAt = null;
  let firstCpu = null;
  let done = 0;
  let jobsFailed = 0;
  let finish;
  const finished = new Promise((resolve) => {
    finish = resolve;
  });

  // Three parameters, as Twenty's driver declares its processor since it pins bullmq 5.78.0: from
  // 5.64 on, bullmq then gives every job its own AbortController (docs/interop.md).
  const processor = async (job, _token, _abortSignal) => {
    if (firstAt === null) {
      firstAt = performance.now();
      firstCpu = process.cpuUsage();
    }
    if (job.name !== JOB_NAME) {
      throw new Error(`bench-webhook-worker runs only ${JOB_NAME}, not ${job.name}`);
    }
    // Older Twenty releases stored one payload object instead of a list.
    const items = Array.isArray(job.data) ? job.data : [job.data];
    const results = await Promise.all(items.map(deliver));
    for (const ok of results) {
      if (ok) deliveries.ok += 1;
      else deliveries.failed += 1;
    }
  };

  const worker = new Worker(queueName, processor, {
    connection,
    prefix: PREFIX,
    concurrency,
    lockDuration: config.lockDuration,
    maxStalledCount: config.maxStalledCount,
    metrics: { maxDataPoints: bullmq.MetricsTime.ONE_WEEK },
  });
  const onFinished = () => {
    done += 1;
    if (done === jobs) {
      finish({ elapsedMs: performance.now() - firstAt, cpu: cpuMs(process.cpuUsage(firstCpu)) });
    }
  };
  worker.on('completed', onFinished);
  worker.on('failed', (job, err) => {
    jobsFailed += 1;
    process.stderr.write(`job failed: ${err && err.message}\n`);
    onFinished();
  });
  worker.on('error', (err) => process.stderr.write(`worker error: ${err && err.stack}\n`));

  await worker.waitUntilReady();
  emit({ event: 'ready', pid: process.pid, bullmq: version });
  const { elapsedMs, cpu } = await finished;
  emit({
    event: 'done',
    impl: 'node',
    bullmq: version,
    node: process.version,
    concurrency,
    processed: done,
    jobs_failed: jobsFailed,
    deliveries_ok: deliveries.ok,
    deliveries_failed: deliveries.failed,
    elapsed_s: elapsedMs / 1000,
    cpu_ms: cpu,
    max_rss_kb: process.resourceUsage().maxRSS,
  });
  await worker.close();
  await connection.quit().catch(() => connection.disconnect());
}

main().then(
  () => {
    // fetch keeps idle keep-alive sockets open for a while: do not let them hold the exit.
    setTimeout(() => process.exit(0), 2000).unref();
  },
  (err) => {
    process.stderr.write(`bench-webhook-worker error: ${err && err.stack ? err.stack : err}\n`);
    process.exit(1);
  },
);
