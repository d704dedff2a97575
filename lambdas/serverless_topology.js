'use strict';

// Serverless variables file: what serverless.yml needs from ../queues.yml (the single source of truth
// for queues), so that no queue name is restated there. Used as
//   ${file(./lambdas/serverless_topology.js):dlqArns}          -> [{Fn::Sub: arn of every DLQ}]
//   ${file(./lambdas/serverless_topology.js):sourceQueueArns}  -> [{Fn::Sub: arn of every source queue}]
// The SQS names are `custom.queuePrefix` + the `name`/`dlq` of each queue, as at run time
// (SQS_QUEUE_PREFIX + name). Region and account come from CloudFormation pseudo-parameters, so
// `osls package` needs no AWS call.

const fs = require('fs');
const path = require('path');
const yaml = require('js-yaml');

const TOPOLOGY = path.join(__dirname, '..', 'queues.yml');
// SQS standard queue names: 1-80 characters, alphanumerics, hyphens and underscores.
const SQS_NAME = /^[A-Za-z0-9_-]{1,80}$/;

function queues() {
  const doc = yaml.load(fs.readFileSync(TOPOLOGY, 'utf8'));
  const entries = Object.entries((doc && doc.queues) || {});
  if (entries.length === 0) throw new Error(`${TOPOLOGY}: no queues defined`);
  return entries.map(([key, queue]) => {
    for (const field of ['name', 'dlq']) {
      if (!queue || typeof queue[field] !== 'string') {
        throw new Error(`${TOPOLOGY}: queues.${key}.${field} must be a string`);
      }
    }
    return queue;
  });
}

async function arns(field, { resolveVariable }) {
  const prefix = await resolveVariable('self:custom.queuePrefix');
  if (typeof prefix !== 'string') throw new Error(`custom.queuePrefix must be a string, got ${prefix}`);
  return queues().map((queue) => {
    const name = `${prefix}${queue[field]}`;
    if (!SQS_NAME.test(name)) throw new Error(`"${name}" is not a valid SQS queue name (prefix "${prefix}")`);
    return { 'Fn::Sub': `arn:\${AWS::Partition}:sqs:\${AWS::Region}:\${AWS::AccountId}:${name}` };
  });
}

module.exports = {
  dlqArns: (context) => arns('dlq', context),
  sourceQueueArns: (context) => arns('name', context),
};
