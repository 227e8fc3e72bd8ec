#!/usr/bin/env node
'use strict';
// The Node side of the embeddings example: the app's own producer, as such apps write it.
//
//   node examples/embeddings/producer.js [--documents N] [--fail-once ID]
//
// It opens the `embeddings` queue with the app's default job options (3 attempts, exponential
// backoff from 1 s, keep the last 100 completed and 500 failed jobs), adds N documents in one
// bulk call (`embed-document`) and one batch job (`embed-batch`), and prints their job ids as
// JSON. The document whose id is --fail-once asks its worker to fail its first attempt.
// REDIS_URL and TWENTY_JOBS_PREFIX (the BullMQ key prefix, default `bull`) say where, as for
// twenty-jobs.
//
// It uses node_fixture's bullmq build (`make install`), so it needs no install of its own.

const { bullmq, IORedis } = require('../../node_fixture/lib/bullmq');

const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
const PREFIX = process.env.TWENTY_JOBS_PREFIX || 'bull';

function option(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  return at === -1 ? fallback : process.argv[at + 1];
}

async function main() {
  const documents = Number(option('documents', 10));
  const failOnce = option('fail-once', 'doc-3');
  const connection = new IORedis(REDIS_URL, { maxRetriesPerRequest: null });
  const queue = new bullmq.Queue('embeddings', {
    connection,
    prefix: PREFIX,
    defaultJobOptions: {
      attempts: 3,
      backoff: { type: 'exponential', delay: 1000 },
      removeOnComplete: { count: 100 },
      removeOnFail: { count: 500 },
    },
  });
  try {
    const docs = await queue.addBulk(
      Array.from({ length: documents }, (_, i) => ({
        name: 'embed-document',
        data: { id: `doc-${i}`, text: `document number ${i}`, failOnce: `doc-${i}` === failOnce },
      })),
    );
    const batch = await queue.add('embed-batch', { texts: ['alpha', 'beta', 'gamma', 'delta'] });
    process.stdout.write(`${JSON.stringify({ documents: docs.map((job) => job.id), batch: batch.id })}\n`);
  } finally {
    await queue.close();
    await connection.quit();
  }
}

main().catch((err) => {
  process.stderr.write(`producer failed: ${err.message}\n`);
  process.exit(1);
});
