-- bench/read_es_load_count.sql: es_load, server side only (one row to the client).
-- count(e) uses the whole row so that every column is formed, as for SELECT *.
SELECT count(e) FROM es_load('load-1') e;
