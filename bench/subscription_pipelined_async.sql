-- bench/subscription_pipelined_async.sql: bench/subscription_pipelined.sql
-- in a session with synchronous_commit = off, as a consumer whose sink is
-- outside the database may run (an acknowledgement lost in a server crash
-- only means the batch is delivered again: at least once either way).
\startpipeline
SET synchronous_commit = off;
SELECT es_subscription_ack('bench', :last);
SELECT * FROM es_subscription_read('bench', 1000);
\endpipeline
\set last :last + 1000
