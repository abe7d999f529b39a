-- bench/aggregate_es_big.sql: es_aggregate of the 10,000-event stream big-1 (snapshot_every = 0).
SELECT * FROM es_aggregate('big-1');
