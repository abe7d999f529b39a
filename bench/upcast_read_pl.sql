-- bench/upcast_read_pl.sql: the stream upcast by PL/pgSQL functions (1,000 events, 2 upcasting steps each), all rows to the client.
SELECT * FROM es_load('pl-1');
