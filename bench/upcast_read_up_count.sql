-- bench/upcast_read_up_count.sql: the upcast stream, server side only (one row to the client).
-- count(e) uses the whole row so that every column is formed, as for SELECT *.
SELECT count(e) FROM es_load('up-1') e;
