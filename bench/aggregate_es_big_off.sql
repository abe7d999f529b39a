-- bench/aggregate_es_big_off.sql: es_aggregate of big-1, run with event_sourcing.inline_sql_callbacks = off
-- (aggregate_bench.sh adds it to PGOPTIONS): bank_evolve called through the function manager.
SELECT * FROM es_aggregate('big-1');
