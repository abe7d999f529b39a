-- bench/upcast_read_plain_count.sql: the stream without upcasters, server side only (one row to the client).
-- count(e) uses the whole row so that every column is formed, as for SELECT *.
SELECT count(e) FROM es_load('plain-1') e;
