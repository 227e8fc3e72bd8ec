#!/usr/bin/env node
'use strict';
// The Node side of the twenty-jobs interop tests.
//
//   node node_fixture/bin/fixture.js <command> [--key value ...]
//
// Every command prints exactly one JSON document on stdout and exits 0, or prints an error on
// stderr and exits non-zero. See node_fixture/README.md for the commands.

const fs = require('fs');
const { bullmq, version, selector, IORedis } = require('../lib/bullmq');
const { parseArgs, required, json, int } = require('../lib/args');
const twenty = require('../lib/twenty');
const { buildVectors } = require('../lib/vectors');

const { Queue, Worker, Job } = bullmq;

const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
const PREFIX = process.env.TJ_PREFIX || 'bull';

// Twenty's queue client: one ioredis instance from the URL with maxRetriesPerRequest null
// (redis-client.service.ts), shared by every Queue and Worker (bullmq duplicates it for blocking).
let sharedConnection;
function connection() {
  if (!sharedConnection) {
    sharedConnection = new IORedis(REDIS_URL, { maxRetriesPerRequest: null });
  }
  return sharedConnection;
}

function openQueue(opts) {
  return new Queue(required(opts, 'queue'), { connection: connection(), prefix: PREFIX });
}

async function withQueue(opts, fn) {
  const queue = openQueue(opts);
  try {
    return await fn(queue);
  } finally {
    await queue.close();
  }
}

// ---------------------------------------------------------------- producer commands

// BullMQDriver.add (newest, docs/twenty-queues.md): dedupe on waiting+prioritized, then queue.add.
async function cmdAdd(opts) {
  const name = required(opts, 'name');
  const data = json(opts, 'data', {});
  const options = {
    id: opts.id === undefined ? undefined : String(opts.id),
    priority: int(opts, 'priority', undefined),
    retryLimit: int(opts, 'retry-limit', undefined),
    delay: int(opts, 'delay', undefined),
    backoff: json(opts, 'backoff', undefined),
  };
  return withQueue(opts, async (queue) => {
    if (options.id) {
      const waiting = await queue.getJobs(twenty.DEDUPE_STATES);
      if (twenty.isAlreadyWaiting(waiting, options.id)) {
        return { id: null, deduplicated: true };
      }
    }
    const job = await queue.add(name, data, twenty.buildJobOpts(queue.name, options));
    return { id: job.id };
  });
}

// bulkAdd (newest, spec @ 26edbfbc): read waiting once, drop items already waiting, item jobIds verbatim.
async function cmdAddBulk(opts) {
  const name = required(opts, 'name');
  // --items-file for lists too long for one argv string (Linux caps a single argument at 128 KiB).
  const items = opts['items-file'] !== undefined
    ? JSON.parse(fs.readFileSync(required(opts, 'items-file'), 'utf8'))
    : json(opts, 'items', undefined);
  if (!Array.isArray(items)) throw new Error('--items must be a JSON array of {data, jobId?}');
  const options = {
    priority: int(opts, 'priority', undefined),
    retryLimit: int(opts, 'retry-limit', undefined),
    delay: int(opts, 'delay', undefined),
    backoff: json(opts, 'backoff', undefined),
  };
  return withQueue(opts, async (queue) => {
    const hasIds = items.some((item) => item.jobId);
    const waiting = hasIds ? await queue.getJobs(twenty.DEDUPE_STATES) : [];
    const kept = items.filter((item) => !item.jobId || !twenty.isAlreadyWaiting(waiting, item.jobId));
    const jobs = await queue.addBulk(
      kept.map((item) => {
        const jobOpts = twenty.buildJobOpts(queue.name, options);
        jobOpts.jobId = item.jobId;
        return { name, data: item.data, opts: jobOpts };
      }),
    );
    return { ids: jobs.map((job) => job.id) };
  });
}

// addCron (docs/twenty-queues.md, "Cron"): upsertJobScheduler(getJobKey, repeat, {name, data, opts}).
async function cmdAddCron(opts) {
  const name = required(opts, 'name');
  const data = json(opts, 'data', undefined);
  const repeat = {};
  if (opts.pattern !== undefined) repeat.pattern = required(opts, 'pattern');
  if (opts.every !== undefined) repeat.every = int(opts, 'every', undefined);
  if (!repeat.pattern === !repeat.every) throw new Error('give exactly one of --pattern or --every');
  const priority = int(opts, 'priority', undefined);
  const id = twenty.schedulerId(name, opts['job-id'] === undefined ? undefined : String(opts['job-id']));
  return withQueue(opts, async (queue) => {
    const job = await queue.upsertJobScheduler(id, repeat, {
      name,
      data,
      opts: {
        priority,
        repeat,
        removeOnComplete: twenty.REMOVE_ON_COMPLETE,
        removeOnFail: twenty.REMOVE_ON_FAIL,
      },
    });
    return { schedulerId: id, firstJobId: job ? job.id : null };
  });
}

async function cmdRemoveCron(opts) {
  const name = required(opts, 'name');
  const id = twenty.schedulerId(name, opts['job-id'] === undefined ? undefined : String(opts['job-id']));
  return withQueue(opts, async (queue) => ({ schedulerId: id, removed: await queue.removeJobScheduler(id) }));
}

// Plain queue.add for tests that need arbitrary BullMQ options (legacy `repeat`, lifo, ...).
async function cmdAddRaw(opts) {
  const name = required(opts, 'name');
  const data = json(opts, 'data', {});
  const jobOpts = json(opts, 'opts', {});
  return withQueue(opts, async (queue) => {
    const job = await queue.add(name, data, jobOpts);
    return { id: job.id };
  });
}

// ---------------------------------------------------------------- worker

function writeLine(fd, record) {
  fs.writeSync(fd, `${JSON.stringify(record)}\n`);
}

async function cmdWork(opts) {
  const queueName = required(opts, 'queue');
  const out = required(opts, 'out');
  const config = twenty.queueConfig(queueName);
  const maxJobs = int(opts, 'max-jobs', undefined);
  const timeoutMs = int(opts, 'timeout-ms', undefined);
  const failTimes = int(opts, 'fail-times', 0);
  const failMessage = opts['fail-message'] === undefined ? 'fixture failure' : String(opts['fail-message']);
  const sleepMs = int(opts, 'sleep-ms', 0);
  const returnValue = json(opts, 'return-value', undefined);
  // --handles A,B: a worker that has processors for these job names only, as Twenty's is. Twenty's
  // MessageQueueExplorer runs the @Process methods matching job.name; with none the job completes
  // without running anything. Such jobs get a record with `unhandled: true`.
  const handles = opts.handles === undefined
    ? undefined
    : new Set(String(required(opts, 'handles')).split(',').filter(Boolean));
  const fd = fs.openSync(out, 'a');

  const workerOpts = {
    connection: connection(),
    prefix: PREFIX,
    concurrency: int(opts, 'concurrency', config.concurrency),
    lockDuration: int(opts, 'lock-duration', config.lockDuration),
    maxStalledCount: int(opts, 'max-stalled-count', config.maxStalledCount),
  };
  const stalledInterval = int(opts, 'stalled-interval', undefined);
  if (stalledInterval !== undefined) workerOpts.stalledInterval = stalledInterval;
  if (opts.metrics) workerOpts.metrics = { maxDataPoints: bullmq.MetricsTime.ONE_WEEK };
  // A Node app's rate limiter, `{max, duration}`: shared with every worker of the queue through
  // the queue's `limiter` key.
  const limiter = json(opts, 'limiter', undefined);
  if (limiter !== undefined) workerOpts.limiter = limiter;

  let done = 0;
  let finish;
  const finished = new Promise((resolve) => {
    finish = resolve;
  });

  const processor = async (job) => {
    if (handles && !handles.has(job.name)) {
      writeLine(fd, {
        id: job.id,
        name: job.name,
        unhandled: true,
        attemptsMade: job.attemptsMade,
        attemptsStarted: job.attemptsStarted,
        queue: queueName,
        pid: process.pid,
        startedAt: Date.now(),
      });
      return undefined;
    }
    writeLine(fd, {
      id: job.id,
      name: job.name,
      data: job.data,
      // The data exactly as Node's JSON.stringify writes it, for byte-for-byte comparisons.
      dataJson: JSON.stringify(job.data),
      opts: job.opts,
      attemptsMade: job.attemptsMade,
      attemptsStarted: job.attemptsStarted,
      queue: queueName,
      pid: process.pid,
      startedAt: Date.now(),
      timestamp: job.timestamp,
      delay: job.delay,
      priority: job.priority,
    });
    if (sleepMs > 0) await new Promise((resolve) => setTimeout(resolve, sleepMs));
    if (job.attemptsMade < failTimes) throw new Error(failMessage);
    return returnValue === undefined ? { processedBy: 'node', pid: process.pid } : returnValue;
  };

  const worker = new Worker(queueName, processor, workerOpts);
  const countDone = () => {
    done += 1;
    if (maxJobs !== undefined && done >= maxJobs) finish('max-jobs');
  };
  worker.on('completed', countDone);
  worker.on('failed', (job, err) => {
    // Only a final failure finishes a job; a failed attempt with retries left does not.
    if (!job || job.attemptsMade >= (job.opts.attempts || 1) || (err && err.name === 'UnrecoverableError')) {
      countDone();
    }
  });
  worker.on('error', (err) => process.stderr.write(`worker error: ${err && err.stack}\n`));

  process.once('SIGTERM', () => finish('sigterm'));
  process.once('SIGINT', () => finish('sigint'));
  if (timeoutMs !== undefined) setTimeout(() => finish('timeout'), timeoutMs).unref();

  await worker.waitUntilReady();
  process.stderr.write(`${JSON.stringify({ ready: true, pid: process.pid, bullmq: version })}\n`);
  if (maxJobs === 0) finish('max-jobs');

  const reason = await finished;
  await worker.close();
  fs.closeSync(fd);
  return { processed: done, reason };
}

// ---------------------------------------------------------------- inspection

async function cmdInspectJob(opts) {
  const id = String(required(opts, 'id'));
  return withQueue(opts, async (queue) => {
    const job = await Job.fromId(queue, id);
    if (!job) return { job: null };
    const logs = await queue.getJobLogs(id);
    return {
      id: job.id,
      name: job.name,
      data: job.data,
      opts: job.opts,
      attemptsMade: job.attemptsMade,
      attemptsStarted: job.attemptsStarted,
      stalledCounter: job.stalledCounter,
      failedReason: job.failedReason === undefined ? null : job.failedReason,
      stacktrace: job.stacktrace,
      returnvalue: job.returnvalue === undefined ? null : job.returnvalue,
      progress: job.progress,
      state: await job.getState(),
      timestamp: job.timestamp,
      processedOn: job.processedOn === undefined ? null : job.processedOn,
      finishedOn: job.finishedOn === undefined ? null : job.finishedOn,
      delay: job.delay,
      priority: job.priority,
      repeatJobKey: job.repeatJobKey === undefined ? null : job.repeatJobKey,
      logs,
    };
  });
}

const COUNT_STATES = ['waiting', 'active', 'completed', 'failed', 'delayed', 'prioritized', 'paused', 'waiting-children'];

async function cmdCounts(opts) {
  return withQueue(opts, (queue) => queue.getJobCounts(...COUNT_STATES));
}

async function cmdWorkers(opts) {
  return withQueue(opts, async (queue) => {
    const workers = await queue.getWorkers();
    return { count: workers.length, workers: workers.map((w) => w.rawname || w.name) };
  });
}

async function cmdMetrics(opts) {
  const type = required(opts, 'type');
  if (type !== 'completed' && type !== 'failed') throw new Error('--type is completed or failed');
  return withQueue(opts, (queue) => queue.getMetrics(type, int(opts, 'start', 0), int(opts, 'end', -1)));
}

async function cmdFailed(opts) {
  return withQueue(opts, async (queue) => {
    const jobs = await queue.getFailed();
    return {
      jobs: jobs.map((job) => ({
        id: job.id,
        name: job.name,
        failedReason: job.failedReason,
        stacktrace: job.stacktrace,
        attemptsMade: job.attemptsMade,
      })),
    };
  });
}

async function cmdSchedulers(opts) {
  return withQueue(opts, async (queue) => ({ schedulers: await queue.getJobSchedulers() }));
}

async function cmdRepeatables(opts) {
  return withQueue(opts, async (queue) => {
    if (typeof queue.getRepeatableJobs !== 'function') return { supported: false, repeatables: [] };
    return { supported: true, repeatables: await queue.getRepeatableJobs() };
  });
}

async function cmdPause(opts) {
  return withQueue(opts, async (queue) => {
    await queue.pause();
    return { paused: await queue.isPaused() };
  });
}

async function cmdResume(opts) {
  return withQueue(opts, async (queue) => {
    await queue.resume();
    return { paused: await queue.isPaused() };
  });
}

// Constructing a Queue is enough for bullmq to write `meta.version` (what a Twenty server does at boot).
async function cmdTouch(opts) {
  return withQueue(opts, async (queue) => {
    await queue.waitUntilReady();
    // bullmq writes the meta hash asynchronously after connecting (6.x exposes the promise).
    if (queue.queueMetaInitialized) await queue.queueMetaInitialized;
    const key = `${PREFIX}:${queue.name}:meta`;
    for (let i = 0; i < 100 && !(await connection().hget(key, 'version')); i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return { meta: await connection().hgetall(key) };
  });
}

const COMMANDS = {
  version: async () => ({ bullmq: version, selector }),
  add: cmdAdd,
  'add-bulk': cmdAddBulk,
  'add-cron': cmdAddCron,
  'remove-cron': cmdRemoveCron,
  'add-raw': cmdAddRaw,
  work: cmdWork,
  'inspect-job': cmdInspectJob,
  counts: cmdCounts,
  workers: cmdWorkers,
  metrics: cmdMetrics,
  failed: cmdFailed,
  schedulers: cmdSchedulers,
  repeatables: cmdRepeatables,
  pause: cmdPause,
  resume: cmdResume,
  touch: cmdTouch,
  'json-vectors': async () => ({ vectors: buildVectors() }),
};

async function main() {
  const { command, opts } = parseArgs(process.argv.slice(2));
  const run = COMMANDS[command];
  if (!run) {
    throw new Error(`unknown command '${command}'; commands: ${Object.keys(COMMANDS).join(', ')}`);
  }
  const result = await run(opts);
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main()
  .then(
    () => 0,
    (err) => {
      process.stderr.write(`fixture error: ${err && err.stack ? err.stack : err}\n`);
      return 1;
    },
  )
  .then(async (code) => {
    if (sharedConnection) {
      await sharedConnection.quit().catch(() => sharedConnection.disconnect());
    }
    process.exitCode = code;
    // Nothing should keep the loop alive now; if a bullmq timer does, do not hang the caller.
    setTimeout(() => process.exit(code), 2000).unref();
  });
