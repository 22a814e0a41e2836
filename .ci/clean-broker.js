// Deletes queues and exchanges left on the shared broker by interrupted test, bench or demo runs:
// hundreds of idle quorum queues slow RabbitMQ's start and every declare. Names: t<8 hex>.*,
// unit-*, bench*. Uses rabbitmqctl to list and amqplib to delete (fast).
const { execFileSync } = require('node:child_process');
const amqp = require('amqplib');

const STALE = /^(t[0-9a-f]{8}[._]|unit-|bench)/;

// Queues are listed with their consumer count: a queue someone still consumes (a benchmark or
// demo running right now) is not stale, whatever its name.
function list(kind) {
  const cols = kind === 'queues' ? ['name', 'consumers'] : ['name'];
  try {
    return execFileSync('rabbitmqctl', ['-q', `list_${kind}`, ...cols], { encoding: 'utf8', timeout: 60_000 })
      .split('\n')
      .map((l) => l.trim().split('\t'))
      .filter(([n, consumers]) => n && n !== 'name' && STALE.test(n) && (consumers === undefined || consumers === '0'))
      .map(([n]) => n);
  } catch (err) {
    console.log(`[ci] cannot list ${kind}: ${err.message.split('\n')[0]}`);
    return [];
  }
}

(async () => {
  const queues = list('queues');
  const exchanges = list('exchanges');
  if (!queues.length && !exchanges.length) return console.log('[ci] broker: no stale test queues');
  const conn = await amqp.connect(process.env.SITESYNC_TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672');
  const ch = await conn.createChannel();
  for (const q of queues) await ch.deleteQueue(q);
  for (const x of exchanges) await ch.deleteExchange(x);
  await conn.close();
  console.log(`[ci] broker: deleted ${queues.length} stale queues and ${exchanges.length} exchanges`);
})().catch((err) => {
  console.log(`[ci] broker cleanup failed: ${err.message}`);
});
