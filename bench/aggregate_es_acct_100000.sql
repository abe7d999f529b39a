-- bench/aggregate_es_acct_100000.sql: es_aggregate of a 100,000-event stream (snapshot_every = 100).
SELECT * FROM es_aggregate('acct-100000');
