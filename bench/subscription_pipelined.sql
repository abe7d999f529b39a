-- bench/subscription_pipelined.sql: one batch of a consumer whose sink is
-- outside the database: the acknowledgement of the batch before (everything
-- up to :last) and the read of the next 1,000 events of subscription 'bench'
-- (every row to the client), sent together in one round trip; the pipeline's
-- single sync makes them one implicit transaction.  (The first ack, of 0, is
-- a no-op; the last batch is acknowledged by the next call.)
\startpipeline
SELECT es_subscription_ack('bench', :last);
SELECT * FROM es_subscription_read('bench', 1000);
\endpipeline
\set last :last + 1000
