-- bench/upcast_read_pl_count.sql: the stream upcast by PL/pgSQL functions, server side only (one row to the client).
-- count(e) uses the whole row so that every column is formed, as for SELECT *.
SELECT count(e) FROM es_load('pl-1') e;
