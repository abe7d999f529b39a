-- bench/upcast_read_plain.sql: the stream without upcasters (1,000 events), all rows to the client.
SELECT * FROM es_load('plain-1');
