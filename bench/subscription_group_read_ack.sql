-- bench/subscription_group_read_ack.sql: one batch of a member of a consumer
-- group (subscription_group.sh): the member's next 1,000 events of
-- subscription :sub (every row to the client; \aset keeps the last row's
-- position) and, when some came, the acknowledgement of the last one, in one
-- transaction.  pgbench -D sub=NAME; the member is the client's number
-- (pgbench -c 4: clients 0 .. 3 are members 0 .. 3; -c 1: member 0).
\set member :client_id
\set last 0
BEGIN;
SELECT e.global_position AS last, e.* FROM es_subscription_read(:sub, 1000, :member) e \aset
\if :last > 0
SELECT es_subscription_ack(:sub, :last, :member);
\endif
COMMIT;
