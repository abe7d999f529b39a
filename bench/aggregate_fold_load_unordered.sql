-- bench/aggregate_fold_load_unordered.sql: the same fold over es_load without ORDER BY
-- (es_load returns version order; the script checks the result is the same).
SELECT fold_agg(e) FROM (SELECT * FROM es_load('big-1')) e;
