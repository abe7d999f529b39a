// consumer.mjs: one member of an event_sourcing subscription, outside the
// database (doc/consumers.md, "Example consumers").
//
//     node consumer.mjs SUBSCRIPTION MEMBER SINK [BATCH_SIZE]
//
// Loop: wait for the member's events, read a batch, hand it to the sink,
// acknowledge it.  Run one process per member of the consumer group; a second
// process of the same member waits until the first is gone, then carries on
// from its last acknowledgement.
//
// SINK is where the events go:
//   table:NAME  insert each event into table NAME of the same database, in the
//               transaction that acknowledges it: exactly once.  NAME has (at
//               least) the columns global_position bigint, stream_id text,
//               stream_version bigint, event_id uuid, event_type text, data jsonb.
//   file:PATH   append one JSON line per event to PATH, on disk before the
//               acknowledgement commits: at least once (after a crash the
//               unacknowledged tail of the last batch comes again).
//
// Connection: DATABASE_URL if set, else the PG* environment variables
// (PGHOST, PGPORT, PGDATABASE, PGUSER, PGAPPNAME, ...).
// SIGTERM, SIGINT: finish the batch in hand, close the connection, exit 0.
// An error: exit 1 without acknowledging what the sink did not take; run it
// under a supervisor that restarts it.  (40001 from the acknowledgement --
// the member was reset or resized meanwhile -- is not an error: it reads
// again.)
//
// Needs node-postgres: `npm ci` in this directory (package-lock.json pins it).
import fs from 'node:fs';
import pg from 'pg';

const WAIT_MS = 1000; // one wait's timeout: also the longest a shutdown waits

const [name, memberArg, sinkArg = '', batchArg = '100'] = process.argv.slice(2);
const [kind, target] = [sinkArg.slice(0, sinkArg.indexOf(':')), sinkArg.slice(sinkArg.indexOf(':') + 1)];
if (!name || !/^\d+$/.test(memberArg ?? '') || !['table', 'file'].includes(kind) || !/^\d+$/.test(batchArg)) {
  console.error('usage: node consumer.mjs SUBSCRIPTION MEMBER table:NAME|file:PATH [BATCH_SIZE]');
  process.exit(2);
}
const member = Number(memberArg);
const batch = Number(batchArg);

// SIGTERM/SIGINT: stop after the batch in hand (checked between batches).
let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => { stopping = true; });

// One dedicated connection per member, not a pg.Pool: the member's lease is
// a session lock of this connection.
const client = new pg.Client(process.env.DATABASE_URL ? { connectionString: process.env.DATABASE_URL } : {});

// Insert into a table, on the consumer's connection, inside the batch's
// transaction: these rows commit together with the acknowledgement, or not
// at all.  Exactly once.
function tableSink(table) {
  const insert = `INSERT INTO ${pg.escapeIdentifier(table)}
                    (global_position, stream_id, stream_version, event_id, event_type, data)
                  VALUES ($1, $2, $3, $4, $5, $6)`;
  return async (rows) => {
    for (const r of rows) {
      await client.query(insert, [r.global_position, r.stream_id, r.stream_version,
        r.event_id, r.event_type, JSON.stringify(r.data)]);
    }
  };
}

// Append JSON lines to a file: stands for any sink outside the database.
function fileSink(path) {
  const fd = fs.openSync(path, 'a+'); // append, and read the last byte
  let first = true;
  return async (rows) => {
    if (first) {
      // The lease is ours now (we have read), so whoever wrote before is
      // gone.  A crash may have torn its last line: end it, so that it stays
      // a line of its own (its event was not acknowledged: it comes again).
      first = false;
      const { size } = fs.fstatSync(fd);
      const last = Buffer.alloc(1);
      if (size > 0 && fs.readSync(fd, last, 0, 1, size - 1) === 1 && last[0] !== 0x0a) {
        fs.appendFileSync(fd, '\n');
      }
    }
    // bigint columns arrive as strings: positions and versions stay far
    // below 2^53, so they are written as JSON numbers
    fs.appendFileSync(fd, rows.map((r) => JSON.stringify({
      global_position: Number(r.global_position), stream_id: r.stream_id,
      stream_version: Number(r.stream_version), event_id: r.event_id,
      event_type: r.event_type, data: r.data,
    }) + '\n').join(''));
    // On disk before the acknowledgement commits.  A crash between the two
    // delivers the batch again: the reader of the file must treat
    // global_position (or event_id) as an idempotency key.
    fs.fsyncSync(fd);
  };
}

const sink = kind === 'table' ? tableSink(target) : fileSink(target);

await client.connect();
try {
  while (!stopping) {
    // Wait for the member's next events, outside a transaction (each wait
    // must see new commits).  This takes the member's lease first: while
    // another process holds it (an instance still alive), it waits here, and
    // takes over once that process's connection is gone.
    const { rows: [{ woke }] } = await client.query(
      'SELECT es_subscription_wait($1, $2, $3) AS woke', [name, member, WAIT_MS]);
    if (!woke) continue;
    await client.query('BEGIN');
    try {
      const { rows } = await client.query(
        `SELECT global_position, stream_id, stream_version, event_id, event_type, data
           FROM es_subscription_read($1, $2, $3)`, [name, batch, member]);
      if (rows.length > 0) {
        await sink(rows);
        // Only once the sink has the batch: the checkpoint moves at COMMIT.
        // If anything above failed or the process died, nothing is
        // acknowledged and the batch comes again.
        await client.query('SELECT es_subscription_ack($1, $2, $3)',
          [name, rows[rows.length - 1].global_position, member]);
      }
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      // 40001: the member was reset or its group resized after this read,
      // so the batch may not be the member's any more: read again from the
      // member's new checkpoint.
      if (err.code === '40001') continue;
      throw err;
    }
  }
} finally {
  // Closing the connection ends the lease: another instance takes over.
  await client.end();
}
