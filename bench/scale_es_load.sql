-- bench/scale_es_load.sql: read one whole stream through es_load, every row
-- to the client (pgbench -D stream=load-100 or load-10000).
SELECT * FROM es_load(:stream);
