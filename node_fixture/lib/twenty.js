'use strict';
// Twenty's producer semantics (docs/twenty-queues.md), written from the spec, not copied.

// MESSAGE_QUEUE_WORKER_CONFIG (message-queue-worker-config.constant.ts @ 00343b26).
const QUEUES = {
  'task-assigned-queue': { priority: 4, concurrency: 1, lockDuration: 30000, maxStalledCount: 1 },
  'messaging-queue': { priority: 2, concurrency: 1, lockDuration: 30000, maxStalledCount: 1 },
  'webhook-queue': { priority: 2, concurrency: 1, lockDuration: 30000, maxStalledCount: 1 },
  'cron-queue': { priority: 7, concurrency: 1, lockDuration: 30000, maxStalledCount: 1 },
  'email-queue': { priority: 1, concurrency: 1, lockDuration: 30000, maxStalledCount: 1 },
  'calendar-queue': { priority: 4, concurrency: 1, lockDuration: 30000, maxStalledCount: 1 },
  'connected-account-sync-webhook-queue': { priority: 1, concurrency: 5, lockDuration: 30000, maxStalledCount: 1 },
  'contact-creation-queue': { priority: 4, concurrency: 1, lockDuration: 30000, maxStalledCount: 1 },
  'billing-queue': { priority: 1, concurrency: 1, lockDuration: 30000, maxStalledCount: 1 },
  'workspace-queue': { priority: 5, concurrency: 1, lockDuration: 30000, maxStalledCount: 1 },
  'entity-events-to-db-queue': { priority: 1, concurrency: 1, lockDuration: 30000, maxStalledCount: 1 },
  'workflow-queue': { priority: 2, concurrency: 1, lockDuration: 30000, maxStalledCount: 1 },
  'delayed-jobs-queue': { priority: 3, concurrency: 1, lockDuration: 30000, maxStalledCount: 1 },
  'delete-cascade-queue': { priority: 6, concurrency: 1, lockDuration: 30000, maxStalledCount: 1 },
  'logic-function-queue': { priority: 4, concurrency: 10, lockDuration: 30000, maxStalledCount: 1 },
  'trigger-queue': { priority: 5, concurrency: 1, lockDuration: 30000, maxStalledCount: 1 },
  'ai-queue': { priority: 5, concurrency: 1, lockDuration: 30000, maxStalledCount: 1 },
  'ai-stream-queue': { priority: 2, concurrency: 20, lockDuration: 600000, maxStalledCount: 0 },
};

// A queue that is not Twenty's: BullMQ defaults (priority 0 = the plain wait list).
const DEFAULT_QUEUE = { priority: undefined, concurrency: 1, lockDuration: 30000, maxStalledCount: 1 };

function queueConfig(queueName) {
  return QUEUES[queueName] || DEFAULT_QUEUE;
}

// QUEUE_RETENTION (constants/queue-retention.constants.ts @ 41d24255).
const REMOVE_ON_COMPLETE = { age: 14400, count: 1000 };
const REMOVE_ON_FAIL = { age: 604800, count: 1000 };

// `-` + a 36-character uuid.
const UUID_SUFFIX_LENGTH = 37;

function jobIdPrefix(jobId) {
  return jobId.length > UUID_SUFFIX_LENGTH ? jobId.slice(0, -UUID_SUFFIX_LENGTH) : jobId;
}

// Older bulk ids are `<id>-<uuid>-<index>`: drop the index, then the uuid.
function bulkJobIdPrefix(jobId) {
  const match = /^(.*)-(\d+)$/.exec(jobId);
  return match ? jobIdPrefix(match[1]) : jobIdPrefix(jobId);
}

// is-queue-job-id-already-waiting.util.ts: exact id, or id minus the suffix.
function isAlreadyWaiting(jobs, id) {
  return jobs.some((job) => {
    if (!job || typeof job.id !== 'string') return false;
    return job.id === id || jobIdPrefix(job.id) === id || bulkJobIdPrefix(job.id) === id;
  });
}

// The BullMQ JobsOptions Twenty's newest BullMQDriver.add builds.
function buildJobOpts(queueName, options) {
  const opts = {
    jobId: options.id ? `${options.id}-${require('crypto').randomUUID()}` : undefined,
    priority: options.priority ?? queueConfig(queueName).priority,
    attempts: 1 + (options.retryLimit || 0),
    removeOnComplete: REMOVE_ON_COMPLETE,
    removeOnFail: REMOVE_ON_FAIL,
    delay: options.delay,
  };
  if (options.backoff) {
    opts.backoff = {
      type: options.backoff.strategy,
      delay: options.backoff.initialDelayMilliseconds,
      jitter: options.backoff.jitter,
    };
  }
  return opts;
}

// getJobKey (utils/get-job-key.util.ts @ 41d24255).
function schedulerId(jobName, jobId) {
  return jobId ? `${jobName}.${jobId}` : jobName;
}

const DEDUPE_STATES = ['waiting', 'prioritized'];

module.exports = {
  QUEUES,
  queueConfig,
  REMOVE_ON_COMPLETE,
  REMOVE_ON_FAIL,
  jobIdPrefix,
  isAlreadyWaiting,
  buildJobOpts,
  schedulerId,
  DEDUPE_STATES,
};
