-- bench/subscription_sparse_append.sql: an appender of subscription_sparse.sh:
-- one es_append of a batch of 100 events to a random stream of category
-- 'acct'; in one batch out of 1,000 (drawn from the sequence sparse_batch, so
-- exactly, whatever the clients' interleaving) the first event is a 'Rare',
-- the others 'Deposited': one matching event per 100,000 appended.
\set s random(1, 10000)
SELECT es_append('acct-' || :s, NULL,
                 (SELECT jsonb_agg(jsonb_build_object(
                             'type', CASE WHEN i = 1 AND b.n % 1000 = 0 THEN 'Rare' ELSE 'Deposited' END,
                             'data', jsonb_build_object('amount', i, 'currency', 'EUR')))
                  FROM generate_series(1, 100) i, (SELECT nextval('sparse_batch') AS n) b));
