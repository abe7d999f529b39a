-- bench/aggregate_es_bigpl.sql: es_aggregate of the 10,000-event stream bigpl-1 (bank_evolve_plpgsql, snapshot_every = 0).
SELECT * FROM es_aggregate('bigpl-1');
