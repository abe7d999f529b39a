-- bench/read_es_load.sql: read a 1,000-event stream through es_load (all rows to the client).
SELECT * FROM es_load('load-1');
