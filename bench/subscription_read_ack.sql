-- bench/subscription_read_ack.sql: one batch of a consumer: the next 1,000
-- events of subscription 'bench' (every row to the client) and the
-- acknowledgement of the last one, in one transaction; the next batch starts
-- after it (positions are dense, so the last position is :last + 1000).
BEGIN;
SELECT * FROM es_subscription_read('bench', 1000);
SELECT es_subscription_ack('bench', :last + 1000);
COMMIT;
\set last :last + 1000
