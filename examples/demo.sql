CREATE EXTENSION event_sourcing;
SELECT es_append('account-1', 0, 'AccountOpened', '{"owner":"alice"}');
SELECT * FROM es_load('account-1');
