-- bench/aggregate_es_acct_100.sql: es_aggregate of a 100-event stream (snapshot_every = 100).
SELECT * FROM es_aggregate('acct-100');
