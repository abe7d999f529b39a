-- bench/subscription_sparse_poll.sql: one poll of the sparse consumer of
-- subscription_sparse.sh: the next (at most) 100 events of subscription
-- 'sparse' (event_types {Rare}), every row to the client, and, when some
-- came, the acknowledgement of the last one, in one transaction.
\set last 0
BEGIN;
SELECT e.global_position AS last, e.* FROM es_subscription_read('sparse', 100) e \aset
\if :last > 0
SELECT es_subscription_ack('sparse', :last);
\endif
COMMIT;
