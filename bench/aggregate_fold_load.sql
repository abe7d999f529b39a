-- bench/aggregate_fold_load.sql: the same fold with CREATE AGGREGATE over es_load, ordered.
SELECT fold_agg(e ORDER BY stream_version) FROM es_load('big-1') e;
