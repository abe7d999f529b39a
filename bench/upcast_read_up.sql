-- bench/upcast_read_up.sql: the upcast stream (1,000 events, 2 upcasting steps each), all rows to the client.
SELECT * FROM es_load('up-1');
